"""The chart's pods, run for real as containers (tests/docker/kube.py): every Deployment and
StatefulSet of `helm template` with its image, command, env, securityContext, volumes, limits
and Service names, each waited on by its own readiness probe; then the chart's `helm test` pod;
then, through the gateway, a memory stored, found, evolved and its history read; ChromaDB killed
and restarted on its volume with nothing acknowledged lost. A chart broken on purpose (a wrong
env name) fails the same run."""

from __future__ import annotations

import base64
import json
import time

import pytest

from amem import AmemError, Client
from tests.docker.conftest import NAMESPACE, PROXY_IMAGE, render
from tests.docker.kube import Cluster, NotReady, docker

# Building the images (the first test pays for it) takes minutes; the runs themselves, one or two.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]


def _key(cluster: Cluster) -> str:
    [secret] = [s for s in cluster.kind("Secret") if "default-api-key" in (s.get("data") or {})]
    return base64.b64decode(secret["data"]["default-api-key"]).decode()


def _inspect(container: str) -> dict:
    return json.loads(docker("inspect", container))[0]


def test_the_chart_runs_serves_and_keeps_what_it_acknowledged(cluster: Cluster):
    cluster.up(publish={"amem-gateway": 8080})
    cluster.all_ready()
    # Every container is the pod its template describes: user, read-only root, no caps.
    assert set(cluster.pods) == {
        "amem-gateway",
        "amem-embedding",
        "amem-evolution-0",
        "amem-chromadb-0",
    }
    for name in cluster.containers:
        inspect = _inspect(name)
        assert inspect["Config"]["User"] == "10001:10001", name
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True, name
        assert inspect["HostConfig"]["CapDrop"] == ["ALL"], name
        assert "no-new-privileges" in inspect["HostConfig"]["SecurityOpt"], name
    [(pod, code, log)] = cluster.run_tests()
    assert code == 0 and log.strip().endswith("ok"), f"helm test {pod}:\n{log}"

    url = f"http://127.0.0.1:{cluster.published('amem-gateway', 8080)}"
    with Client(url, _key(cluster), timeout=120) as memory:
        note = memory.add("The chart runs on Docker, pods and all", user_id="e2e", wait=True)
        assert note.status == "done" and note.keywords, note  # evolved by the evolution pod
        assert memory.search("does the chart run?", user_id="e2e", k=1).results[0].memory.id == (
            note.id
        )
        assert [e.kind for e in memory.history(note.id).entries] == ["evolve"]
        acked = [
            memory.add(f"acknowledged before the crash {i}", user_id="e2e").id for i in range(5)
        ]

        cluster.kill("amem-chromadb-0")  # SIGKILL, as a node losing the pod would
        cluster.start("amem-chromadb-0")  # the same container, on the same volume
        cluster.ready("amem-chromadb-0")
        deadline = time.monotonic() + 60
        while True:  # the gateway's breaker may be open for a few seconds after the outage
            try:
                found = [memory.get(i).id for i in [note.id, *acked]]
                break
            except AmemError:
                assert time.monotonic() < deadline, "the gateway never recovered"
                time.sleep(1)
        assert found == [note.id, *acked]


def test_a_chart_that_names_a_wrong_env_variable_fails_the_run(images):
    """One deliberate break: the gateway's ChromaDB host under a name nothing reads. The pods
    start, but the gateway never becomes ready, and the run says so."""
    docs = render()
    configmap = next(
        d for d in docs if d["kind"] == "ConfigMap" and "AMEM_CHROMA_HOST" in d.get("data", {})
    )
    configmap["data"]["AMEM_CHROMA_HOSTNAME"] = configmap["data"].pop("AMEM_CHROMA_HOST")
    broken = Cluster(docs, namespace=NAMESPACE, images=images, proxy_image=PROXY_IMAGE)
    try:
        broken.up()
        with pytest.raises(NotReady, match="amem-gateway"):
            broken.ready("amem-gateway", timeout=30)
    finally:
        broken.down()
