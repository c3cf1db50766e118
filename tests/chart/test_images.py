"""Static checks that the Dockerfiles agree with the code and the chart: entrypoints that exist,
the ports the chart probes, non-root users, multi-stage builds, and ignore files that keep the
build context small. The docker tier (tests/docker/) builds and runs them."""

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


# The gateway and evolution share one recipe (SERVICE picks which); embedding has its own.
def _dockerfile(service: str):
    shared = ROOT / "services" / "amem" / "Dockerfile"
    return (
        shared
        if service in ("gateway", "evolution")
        else ROOT / "services" / "amem" / service / "Dockerfile"
    )


@pytest.mark.parametrize("service", list(SERVICES))
def test_dockerfile_matches_code_and_chart(service):
    path = _dockerfile(service)
    text = path.read_text()
    [entrypoint] = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    args = yaml.safe_load(entrypoint)
    if path.parent.name == "amem":
        # The shared recipe's entrypoint execs `python -m amem.<SERVICE>`, for each it allows.
        assert args == ["amem-service"]
        assert "exec /opt/venv/bin/python -m amem.%s" in text
        [allowed] = re.findall(r'case "\$SERVICE" in ([a-z|]+)\)', text)
        assert service in allowed.split("|")
        module = f"amem.{service}"
    else:
        assert args[:2] == ["python", "-m"]
        module = args[2]
    assert importlib.util.find_spec(module) is not None, module
    assert module == f"amem.{service}"
    exposed = {
        int(p) for line in re.findall(r"^EXPOSE (.*)$", text, re.MULTILINE) for p in line.split()
    }
    assert set(SERVICES[service]) <= exposed
    assert (
        len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    )  # build tools stay in the build stage
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "USER 10001" in final_stage and "grpcio-tools" not in final_stage
    assert "scripts/protos.sh" in text  # stubs generated at build time, the Makefile's way
    assert not (path.parent / "Dockerfile.dockerignore").exists()  # the root's applies


def test_the_build_context_is_what_the_builds_read():
    """One .dockerignore at the root (the classic builder reads no other): everything ignored
    but what the Dockerfiles copy; without it the context is the whole checkout, virtualenv
    and all (gigabytes)."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything ignored but what the build names
    copied = set()
    for service in SERVICES:
        text = _dockerfile(service).read_text()
        copied |= {
            src
            for line in re.findall(r"^COPY (?!--from)(.*)$", text, re.MULTILINE)
            for src in line.split()[:-1]
        }
    allowed = {rule[1:].removesuffix("/**") for rule in rules if rule.startswith("!")}
    assert copied <= allowed, copied - allowed


def test_embedding_image_builds_cpu_and_cuda_from_one_file():
    text = (ROOT / "services" / "amem" / "embedding" / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text
    assert "download.pytorch.org/whl/" in text and "cu126" in text
    assert "torch==2.13.0" in text
    # CPU: the shipped virtualenv gets the torch-free extra; torch stays in the build stage.
    assert "requirements.py embedding > /tmp/serve.txt" in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "torch" not in final_stage and "/opt/export" not in final_stage
    assert VALUES["embedding"]["image"]["variant"] == "cpu"


def test_chromadb_image_matches_the_client_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    # Every extra that needs the ChromaDB client pins the same version (gateway, evolution,
    # a-mem): one version, and the chart's server image is that one.
    [client] = set(re.findall(r'"chromadb==([0-9.]+)"', pyproject))
    assert VALUES["chromadb"]["image"]["tag"] == client
