"""The Dockerfiles cannot be built here (no Docker engine), so check that they agree with the
code and the chart: entrypoints that exist, the ports the chart probes, non-root users,
multi-stage builds, and ignore files that keep the build context small."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SERVICES = {
    "gateway": [VALUES["gateway"]["port"]],
    "embedding": [VALUES["embedding"]["port"], VALUES["embedding"]["metricsPort"]],
    "evolution": [VALUES["evolution"]["port"], VALUES["evolution"]["metricsPort"]],
}


@pytest.mark.parametrize("service", list(SERVICES))
def test_dockerfile_matches_code_and_chart(service):
    path = ROOT / "services" / "amem" / service / "Dockerfile"
    text = path.read_text()
    [entrypoint] = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    args = yaml.safe_load(entrypoint)
    assert args[:2] == ["python", "-m"]
    assert importlib.util.find_spec(args[2]) is not None, args[2]
    assert args[2] == f"amem.{service}"
    exposed = {
        int(p) for line in re.findall(r"^EXPOSE (.*)$", text, re.MULTILINE) for p in line.split()
    }
    assert set(SERVICES[service]) <= exposed
    assert (
        len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    )  # build tools stay in the build stage
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "USER 10001" in final_stage and "grpcio-tools" not in final_stage
    assert "grpc_tools.protoc" in text  # stubs generated at build time
    ignore = (path.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[0 if not ignore[0].startswith("#") else 1] == "*"


def test_embedding_image_builds_cpu_and_cuda_from_one_file():
    text = (ROOT / "services" / "amem" / "embedding" / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text
    assert "whl/cpu" in text and "whl/cu126" in text
    assert "torch==2.13.0" in text
    assert VALUES["embedding"]["image"]["variant"] == "cpu"


def test_chromadb_image_matches_the_client_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    # Every extra that needs the ChromaDB client pins the same version (gateway, evolution,
    # a-mem): one version, and the chart's server image is that one.
    [client] = set(re.findall(r'"chromadb==([0-9.]+)"', pyproject))
    assert VALUES["chromadb"]["image"]["tag"] == client
