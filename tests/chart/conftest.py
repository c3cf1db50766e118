"""Chart tests render the real chart with real helm and validate it with real tools; they need
no cluster. The Makefile passes the tools' paths (`make chart-check`, `make test`)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "amem"
# Value scenarios: the chart's CI values, and the values files k8s/ ships for kind and GPUs.
SCENARIOS = (
    {"defaults": None}
    | {f.stem: f for f in sorted((CHART / "ci").glob("*.yaml"))}
    | {f"k8s-{f.stem}": f for f in sorted((ROOT / "k8s").glob("values-*.yaml"))}
)


def tool(name: str) -> str:
    path = os.environ.get(name)
    if not path or not Path(path).exists():
        message = f"{name} is not set: run the chart tests through `make chart-check`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("AMEM_HELM"), *args], capture_output=True, text=True, check=check, timeout=120
    )


@functools.cache
def rendered_text(scenario: str) -> str:
    values = SCENARIOS[scenario]
    args = ["template", "amem", str(CHART), "--namespace", "amem"]
    if values is not None:
        args += ["-f", str(values)]
    return helm(*args).stdout


def rendered(scenario: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered_text(scenario)) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """name -> pod spec of every workload (Deployments, StatefulSets, bare Pods)."""
    specs = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs[d["metadata"]["name"]] = d["spec"]["template"]
        elif d["kind"] == "Pod":
            specs[d["metadata"]["name"]] = d
    return specs


@pytest.fixture(params=list(SCENARIOS))
def scenario(request) -> str:
    return request.param
