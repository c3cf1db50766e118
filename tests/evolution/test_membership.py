"""Replica membership from DNS, as the chart's headless Service provides it."""

from __future__ import annotations

import asyncio
import socket

from amem.evolution.membership import Membership
from amem.evolution.scheduler import owner_of
from amem.evolution.settings import EvolutionSettings


def test_replicas_are_counted_from_dns_and_named_by_ordinal(monkeypatch):
    monkeypatch.setenv("HOSTNAME", "amem-evolution-1")
    membership = Membership(
        EvolutionSettings(peers_dns="localhost", peers_pod_prefix="amem-evolution", peers_port=5)
    )
    asyncio.run(membership.refresh())
    addresses = {i[4][0] for i in socket.getaddrinfo("localhost", 5, type=socket.SOCK_STREAM)}
    assert membership.index == 1  # the StatefulSet ordinal from the host name
    assert membership.replicas == len(addresses)
    assert membership.peers[0] == "amem-evolution-0.localhost:5"


def test_static_peers_and_rendezvous_ownership():
    membership = Membership(EvolutionSettings(peers=["a:1", "b:2", "c:3"], replica_index=2))
    assert membership.replicas == 3 and membership.index == 2
    owners = {owner_of(f"tenant-{i}", 3) for i in range(50)}
    assert owners == {0, 1, 2}  # spread over every replica
    # Growing from 3 to 4 replicas moves only tenants to the new replica.
    for i in range(50):
        before, after = owner_of(f"tenant-{i}", 3), owner_of(f"tenant-{i}", 4)
        assert after in (before, 3)
