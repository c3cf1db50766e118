"""Run the whole system as local processes: ChromaDB (`chroma run`), the embedding service and
the gateway, each on a loopback port. `make run` uses this, and so do the tests, so both start
the system the same way.

Each child gets SIGTERM if this process dies (Linux), so a killed launcher leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc


class ProcessDied(RuntimeError):
    pass


_random = random.SystemRandom()  # never the seeded global state tests may set


def _ephemeral_range() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def free_port() -> int:
    """A loopback port that is free now, taken from below the ephemeral range: the kernel hands
    ephemeral ports to outgoing connections, and one could take a port picked there before
    the service that was meant to listen on it binds it."""
    ephemeral = _ephemeral_range()
    for _ in range(200):
        port = _random.randint(10_000, 65_535)
        if port in ephemeral:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded machine: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Process:
    """One child process whose output goes to a log file (or to our terminal when None)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        out = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 (lives as long as the child)
        self.popen = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops children in order
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            code = self.popen.returncode if self.popen else None
            raise ProcessDied(
                f"{self.name} exited with {code}\n--- log tail ---\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the rest of the system can tell."""
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)


def wait_until(proc: Process, ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} was not {what} within {timeout}s\n{proc.log_tail()}")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1.0).status_code == 200


def grpc_serving(target: str) -> Callable[[], bool]:
    def check() -> bool:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    return check


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name!r} not found beside {sys.executable} or on PATH")
    return found


@dataclass
class LocalStack:
    """The four processes of a local amem. Ports default to free ones."""

    data_dir: Path
    gateway_port: int = 8080
    dev_api_key: str | None = "amem-dev-key"
    log_dir: Path | None = None
    chroma_port: int = field(default_factory=free_port)
    embedding_port: int = field(default_factory=free_port)
    embedding_metrics_port: int = field(default_factory=free_port)
    evolution_port: int = field(default_factory=free_port)
    evolution_metrics_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Run the evolution service (else notes stay `pending`).
    evolution: bool = True
    # Start an embedding service (else use the one already at `embedding_port`).
    embedding: bool = True
    processes: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def for_tenants(
        cls,
        root: Path,
        keys: dict[str, str],
        *,
        env: dict[str, str] | None = None,
        rate_limit: str = "",
        embedding_from: LocalStack | None = None,
        **fields,
    ) -> LocalStack:
        """A stack under `root` (`data/`, `logs/`) on free ports, serving these tenants' API
        keys (tenant -> key or "sha256:<hex>") and no development key, with `env` for its
        processes. The per-key rate limit is off unless `rate_limit` sets one: benchmarks and
        most tests drive the service, not the limit. With `embedding_from`, it uses that
        stack's embedding service instead of starting its own."""
        if embedding_from is not None:
            fields.update(embedding=False, embedding_port=embedding_from.embedding_port)
        return cls(
            data_dir=root / "data",
            log_dir=root / "logs",
            gateway_port=free_port(),
            dev_api_key=None,
            extra_env={
                "AMEM_API_KEYS": json.dumps(keys),
                "AMEM_RATE_LIMIT": rate_limit,
                **(env or {}),
            },
            **fields,
        )

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def embedding_target(self) -> str:
        return f"127.0.0.1:{self.embedding_port}"

    @property
    def evolution_target(self) -> str:
        return f"127.0.0.1:{self.evolution_port}"

    def _env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ANONYMIZED_TELEMETRY="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _process(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log_path = self.log_dir / f"{name}.log" if self.log_dir else None
        proc = Process(name, args, env, log_path)
        self.processes[name] = proc
        return proc

    def start_chroma(self, timeout: float = 60) -> Process:
        path = self.data_dir / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        args = [_executable("chroma"), "run", "--path", str(path), "--host", "127.0.0.1"]
        env = self._env(
            RUST_LOG=os.environ.get("RUST_LOG", "warn")
        )  # chroma logs every request at info
        proc = self._process("chromadb", [*args, "--port", str(self.chroma_port)], env)
        proc.start()
        url = f"http://127.0.0.1:{self.chroma_port}/api/v2/heartbeat"
        wait_until(proc, http_ok(url), timeout, "answering")
        return proc

    def start_embedding(self, timeout: float = 180) -> Process:
        env = self._env(
            AMEM_EMBEDDING_LISTEN=self.embedding_target,
            AMEM_EMBEDDING_METRICS_PORT=str(self.embedding_metrics_port),
            AMEM_EMBEDDING_METRICS_HOST="127.0.0.1",
        )
        proc = self._process("embedding", [sys.executable, "-m", "amem.embedding"], env)
        proc.start()
        wait_until(proc, grpc_serving(self.embedding_target), timeout, "serving")
        return proc

    def start_evolution(
        self,
        timeout: float = 60,
        *,
        name: str = "evolution",
        port: int | None = None,
        metrics_port: int | None = None,
        peers: list[str] | None = None,
        replica_index: int = 0,
        env: dict[str, str] | None = None,
    ) -> Process:
        """An evolution replica (the stack's own by default; others for replica tests)."""
        target = f"127.0.0.1:{port or self.evolution_port}"
        env = self._env(
            AMEM_EVOLUTION_LISTEN=target,
            AMEM_EVOLUTION_METRICS_PORT=str(metrics_port or self.evolution_metrics_port),
            AMEM_EVOLUTION_METRICS_HOST="127.0.0.1",
            AMEM_EVOLUTION_CHROMA_HOST="127.0.0.1",
            AMEM_EVOLUTION_CHROMA_PORT=str(self.chroma_port),
            AMEM_EVOLUTION_EMBEDDING_TARGET=self.embedding_target,
            AMEM_EVOLUTION_PEERS=",".join(peers or []),
            AMEM_EVOLUTION_REPLICA_INDEX=str(replica_index),
            **(env or {}),
        )
        proc = self._process(name, [sys.executable, "-m", "amem.evolution"], env)
        proc.start()
        wait_until(proc, grpc_serving(target), timeout, "serving")
        return proc

    def start_gateway(self, timeout: float = 60) -> Process:
        env = self._env(
            AMEM_HOST="127.0.0.1",
            AMEM_PORT=str(self.gateway_port),
            AMEM_CHROMA_HOST="127.0.0.1",
            AMEM_CHROMA_PORT=str(self.chroma_port),
            AMEM_EMBEDDING_TARGET=self.embedding_target,
        )
        if self.evolution:
            env["AMEM_EVOLUTION_TARGET"] = self.evolution_target
        if self.dev_api_key:
            env["AMEM_DEV_API_KEY"] = self.dev_api_key
        proc = self._process("gateway", [sys.executable, "-m", "amem.gateway"], env)
        proc.start()
        wait_until(proc, http_ok(f"{self.gateway_url}/readyz"), timeout, "ready")
        return proc

    def start(self) -> None:
        self.start_chroma()
        if self.embedding:
            self.start_embedding()
        if self.evolution:
            self.start_evolution()
        self.start_gateway()

    def check_alive(self) -> None:
        for proc in self.processes.values():
            proc.check_alive()

    def stop(self) -> None:
        # Front to back, so no request is left half-way into a dependency that is gone.
        for name in ("gateway", *self.processes.keys() - {"gateway", "embedding", "chromadb"}):
            if name in self.processes:
                self.processes[name].stop()
        for name in ("embedding", "chromadb"):
            if name in self.processes:
                self.processes[name].stop()
