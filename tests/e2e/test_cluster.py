"""End-to-end smoke test on a real cluster: install the chart, wait for the rollout with the
`kubernetes` client, and store and find a memory through the gateway.

Runs only when KUBECONFIG points at a reachable cluster that has the images (for example after
`skaffold build` on kind); otherwise it is skipped and says why. `make e2e` runs it.
Extra values: AMEM_E2E_VALUES (a values file, default k8s/values-kind.yaml).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    if not os.environ.get("KUBECONFIG") and not Path.home().joinpath(".kube/config").exists():
        pytest.skip("no cluster: set KUBECONFIG to run the end-to-end test")
    from kubernetes import client, config

    try:
        config.load_kube_config()
        client.VersionApi().get_code(_request_timeout=5)
    except Exception as exc:  # unreachable, expired credentials, ...
        pytest.skip(f"no reachable cluster: {exc}")
    return client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_rollout(client, namespace: str, timeout: float = 600) -> None:
    apps = client.AppsV1Api()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workloads = apps.list_namespaced_deployment(namespace).items
        workloads += apps.list_namespaced_stateful_set(namespace).items
        if workloads and all(
            (w.status.ready_replicas or 0) >= (w.spec.replicas or 1) for w in workloads
        ):
            return
        time.sleep(5)
    pytest.fail(f"the release in {namespace} did not become ready in {timeout}s")


def test_install_then_store_and_find(cluster):
    helm, kubectl = os.environ.get("AMEM_HELM", "helm"), os.environ.get("AMEM_KUBECTL", "kubectl")
    namespace = f"amem-e2e-{uuid.uuid4().hex[:6]}"
    values = os.environ.get("AMEM_E2E_VALUES", str(ROOT / "k8s" / "values-kind.yaml"))
    subprocess.run(
        [
            helm,
            "install",
            "amem",
            str(ROOT / "charts" / "amem"),
            "-n",
            namespace,
            "--create-namespace",
            "-f",
            values,
        ],
        check=True,
    )
    forward = None
    try:
        _wait_for_rollout(cluster, namespace)
        secret = cluster.CoreV1Api().read_namespaced_secret("amem", namespace)
        key = base64.b64decode(secret.data["default-api-key"]).decode()
        port = _free_port()
        forward = subprocess.Popen(
            [kubectl, "-n", namespace, "port-forward", "svc/amem-gateway", f"{port}:80"]
        )
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(60):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        note = httpx.post(
            f"{url}/v1/memories", json={"content": "e2e: amem runs on Kubernetes"}, headers=headers
        )
        assert note.status_code == 201, note.text
        found = httpx.post(
            f"{url}/v1/memories/search",
            json={"query": "does amem run on Kubernetes?"},
            headers=headers,
        ).json()["results"]
        assert found[0]["memory"]["id"] == note.json()["id"]
        subprocess.run([helm, "test", "amem", "-n", namespace], check=True)
    finally:
        if forward:
            forward.terminate()
        subprocess.run([helm, "uninstall", "amem", "-n", namespace], check=False)
        subprocess.run([kubectl, "delete", "namespace", namespace, "--wait=false"], check=False)
