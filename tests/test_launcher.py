"""`amem run` (what `make run` runs): serves on AMEM_PORT with the dev key, keeps data under
AMEM_DATA_DIR, and stops every child process on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from amem.devstack import free_port
from tests.conftest import eventually


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_run_serves_with_the_dev_key_and_stops_all_children(tmp_path, stop_signal):
    port = free_port()
    env = {
        **os.environ,
        "AMEM_PORT": str(port),
        "AMEM_DATA_DIR": str(tmp_path / "data"),
        "AMEM_DEV_API_KEY": "test-dev-key",
    }
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "amem", "run"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"amem run exited {proc.returncode}: {(tmp_path / 'run.log').read_text()}"
                )
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.3)
        headers = {"Authorization": "Bearer test-dev-key"}
        r = httpx.post(f"{url}/v1/memories", json={"content": "hello"}, headers=headers)
        assert r.status_code == 201, r.text
        assert (tmp_path / "data" / "chroma").is_dir()
        # Printed for the user, with the console's address, once every service is up (the
        # gateway can answer before the launcher has seen the last one ready).
        eventually(
            lambda: (
                "test-dev-key" in (text := (tmp_path / "run.log").read_text())
                and f"{url}/console" in text
            ),
            "the key and the console printed",
            timeout=60,
        )
        children = _children(proc.pid)
        assert len(children) == 4  # chroma, embedding, evolution, gateway

        proc.send_signal(stop_signal)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
