"""The docker tier: the images built, and the chart's render run as containers
(tests/docker/kube.py). It installs and starts a Docker engine when the machine has none
(scripts/docker-up.sh). Where there can be none (no root, no apt), it fails in CI and is
skipped elsewhere, saying why."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, helm
from tests.docker.kube import Cluster

NAMESPACE = "amem"
VALUES = ROOT / "tests" / "docker" / "values.yaml"
# The render's names for the two stand-ins -> what we build.
STAND_INS = {
    "local/amem-chromadb:dev": ("tests/docker/Dockerfile.chromadb", "amem-chromadb:dev"),
    "local/amem-test-tools:dev": ("tests/docker/Dockerfile.tools", "amem-test-tools:dev"),
}
# The image that runs tests/docker/service_proxy.py (any with python3).
PROXY_IMAGE = "amem-test-tools:dev"


def _sh(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Build the images (cached by Docker's layers), and map the render's names to them."""
    up = _sh("scripts/docker-up.sh", timeout=300)
    if up.returncode != 0:
        reason = f"the docker tier needs a Docker engine: {up.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    built = _sh("scripts/images.sh")
    assert built.returncode == 0, built.stderr[-4000:]
    python_image = built.stdout.strip().splitlines()[-1]  # the base it built them from
    for rendered, (dockerfile, tag) in STAND_INS.items():
        done = _sh(
            "docker",
            "build",
            "-q",
            "-f",
            dockerfile,
            "--build-arg",
            f"PYTHON_IMAGE={python_image}",
            "-t",
            tag,
            ".",
        )
        assert done.returncode == 0, done.stderr[-4000:]
        _sh("docker", "tag", tag, rendered)
    return {rendered: tag for rendered, (_, tag) in STAND_INS.items()}


def render(*extra: str) -> list[dict]:
    out = helm("template", "amem", str(CHART), "-n", NAMESPACE, "-f", str(VALUES), *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture
def cluster(images) -> Iterator[Cluster]:
    run = Cluster(render(), namespace=NAMESPACE, images=images, proxy_image=PROXY_IMAGE)
    try:
        yield run
    finally:
        run.down()
