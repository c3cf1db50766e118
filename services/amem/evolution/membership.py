"""Who the evolution replicas are, for tenant ownership.

Either a static list (`AMEM_EVOLUTION_PEERS`, index order) or, in Kubernetes, the pods of the
evolution StatefulSet, counted from its headless Service's DNS records (ready pods only) and
addressed by their stable names `<pod-prefix>-<ordinal>.<service>`. A StatefulSet adds and
removes the highest ordinals, so the replicas are always 0..n-1 and an autoscaler can change n.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from amem.evolution.client import EvolutionClient
from amem.evolution.settings import EvolutionSettings

log = logging.getLogger(__name__)


class Membership:
    def __init__(self, settings: EvolutionSettings) -> None:
        self.index = settings.resolved_replica_index()
        self._dns = settings.peers_dns
        self._prefix = settings.peers_pod_prefix
        self._port = settings.peers_port
        self.peers: list[str] = list(settings.peers)
        self._clients: dict[str, EvolutionClient] = {}

    @property
    def replicas(self) -> int:
        return max(1, len(self.peers))

    def client(self, index: int) -> EvolutionClient:
        address = self.peers[index]
        if address not in self._clients:
            self._clients[address] = EvolutionClient(address)
        return self._clients[address]

    async def refresh(self) -> None:
        if not self._dns:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self._dns, self._port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            log.warning("could not resolve evolution peers at %s: %s", self._dns, exc)
            return
        count = len({info[4][0] for info in infos})
        peers = [f"{self._prefix}-{i}.{self._dns}:{self._port}" for i in range(count)]
        if peers != self.peers:
            log.info("evolution replicas: %d (this is %d)", len(peers), self.index)
            self.peers = peers

    async def run(self, interval_s: float) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
