"""kube-proxy's part for the docker tier: a ClusterIP Service as a container that accepts on
each Service port and forwards to the target port of the pods it selects (round-robin, one
connection at a time; the pods' names are resolved by Docker's DNS at each connection, so a
restarted pod is found again). Infrastructure the chart assumes, not a part of amem.

    python service_proxy.py PORT:TARGET[,PORT:TARGET...] POD[,POD...]
"""

from __future__ import annotations

import asyncio
import itertools
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a half-close passes through: the other way stays open
    except (ConnectionError, OSError):
        writer.close()


async def main() -> None:
    ports = [tuple(int(p) for p in spec.split(":")) for spec in sys.argv[1].split(",")]
    pods = itertools.cycle(sys.argv[2].split(","))

    def handler(target: int):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(next(pods), target)
            except OSError:
                writer.close()  # no pod answers: the connection is refused, as with no endpoints
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            up_writer.close()
            writer.close()

        return handle

    servers = [await asyncio.start_server(handler(t), "0.0.0.0", p) for p, t in ports]
    print("forwarding", ports, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
