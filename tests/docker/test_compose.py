"""compose.yaml as a user runs it: `docker compose up` (or Debian's docker-compose, installed
when missing) with the images `make images` builds and the dev key of compose.env; a memory
stored, evolved and found; `down` and `up` again keep it (the named volume); `down -v` removes
everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import httpx
import pytest

from amem import Client
from amem.devstack import free_port
from tests.chart.conftest import ROOT
from tests.conftest import eventually

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def _compose() -> list[str]:
    """The compose command here: the docker CLI's plugin, else Debian's docker-compose
    (installed from Debian's packages when missing and possible)."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "docker-compose"],
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=600,
        )
    if shutil.which("docker-compose") is None:
        reason = "no compose implementation (docker compose, or Debian's docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return ["docker-compose"]


def _wait_ready(url: str, timeout: float = 300) -> None:
    ready = lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200  # noqa: E731
    eventually(ready, f"{url} not ready", timeout, interval=1)


def test_compose_up_serves_and_keeps_memories_across_a_restart(images):
    compose = _compose()
    port = free_port()
    project = f"amem-compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AMEM_IMAGE_TAG": "dev",
        # ChromaDB's official image cannot be pulled here: the stand-in of the same version.
        "AMEM_CHROMADB_IMAGE": images["local/amem-chromadb:dev"],
        "AMEM_PORT": str(port),
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*compose, "-p", project, "-f", str(ROOT / "compose.yaml"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-4000:]}"
        return done

    url = f"http://127.0.0.1:{port}"
    try:
        run("up", "-d", "--no-build")
        _wait_ready(url)
        with Client(url, "amem-dev-key", timeout=120) as memory:
            note = memory.add("Compose runs amem on one host", user_id="compose", wait=True)
            assert note.status == "done" and note.keywords, note
            found = memory.search("how does amem run on one host?", user_id="compose", k=1)
            assert found.results[0].memory.id == note.id
        # The gateway image carries the console and its libraries (fetched at build time).
        for asset in ("console/", "console/console.js", "console/vendor/cytoscape.min.js"):
            served = httpx.get(f"{url}/{asset}", timeout=10)
            assert served.status_code == 200 and served.headers["content-security-policy"], asset
        run("down")  # the containers go; the named volume stays
        run("up", "-d", "--no-build")
        _wait_ready(url)
        with Client(url, "amem-dev-key", timeout=120) as memory:
            assert memory.get(note.id).content == note.content
        for container in run("ps", "-q").stdout.split():
            config = subprocess.run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}",
                    container,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            assert config[0] == "true", container
    finally:
        subprocess.run(
            [*compose, "-p", project, "-f", str(ROOT / "compose.yaml"), "down", "-v"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"name={project}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert volumes == []  # down -v took the memories with it
