"""Faults against a stack of its own (ChromaDB, embedding, evolution, gateway), with short
dependency deadlines (2 s):

- a *hung* dependency (SIGSTOP): requests fail with 503 + Retry-After within the deadline,
  then at once while the circuit breaker is open, and succeed again after SIGCONT with no
  restart; a hung evolution service never slows writes down;
- kill -9 and restart of each process in turn under a steady write load from a second
  process: every acknowledged write is present, complete and searchable, every note is
  evolved in the end, and every error response was a 503 well within the deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amem.core.model import Note
from amem.devstack import LocalStack
from tests.conftest import KEY_A, client_for

DEADLINE_S = 2
# A request may meet a deadline at each of embedding and ChromaDB, plus scheduling slack.
WORST_S = 2 * DEADLINE_S + 2


@pytest.fixture(scope="module")
def fstack(tmp_path_factory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("faults")
    # No rate limit: fast 503s make the load loop fast; the limit is tested elsewhere.
    s = LocalStack.for_tenants(
        root,
        {"tenant-a": KEY_A},
        env={
            "AMEM_EMBEDDING_TIMEOUT_S": str(DEADLINE_S),
            "AMEM_CHROMA_TIMEOUT_S": str(DEADLINE_S),
            "AMEM_EVOLUTION_EMBEDDING_TIMEOUT_S": str(DEADLINE_S),
            "AMEM_EVOLUTION_CHROMA_TIMEOUT_S": str(DEADLINE_S),
            "AMEM_EVOLUTION_SCAN_INTERVAL_S": "1",
        },
    )
    try:
        s.start()
        yield s
    finally:
        for proc in s.processes.values():  # nothing may stay stopped
            if proc.alive():
                os.kill(proc.popen.pid, signal.SIGCONT)
        s.stop()


def _post(api: httpx.Client, content: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = api.post("/v1/memories", json={"content": content})
    return r, time.monotonic() - started


def _recovers(api: httpx.Client, timeout: float = 30) -> float:
    """Seconds until a write succeeds again."""
    started = time.monotonic()
    while True:
        r, _ = _post(api, "after the fault")
        if r.status_code == 201:
            return time.monotonic() - started
        assert r.status_code == 503, r.text
        assert time.monotonic() - started < timeout, "no recovery"
        time.sleep(0.25)


@pytest.mark.parametrize("dependency", ["embedding", "chromadb"])
def test_a_hung_dependency_gets_fast_503s_then_recovers_without_restarts(
    fstack: LocalStack, dependency: str
) -> None:
    proc = fstack.processes[dependency]
    with client_for(fstack, KEY_A) as api:
        assert _post(api, "before the fault")[0].status_code == 201
        os.kill(proc.popen.pid, signal.SIGSTOP)
        try:
            outcomes = [_post(api, f"during the fault {i}") for i in range(10)]
        finally:
            os.kill(proc.popen.pid, signal.SIGCONT)
        for r, seconds in outcomes:
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "unavailable"
            assert int(r.headers["retry-after"]) >= 1
            assert seconds < WORST_S, f"a request hung for {seconds:.1f}s"
        # The first requests wait out the deadline; once the breaker opens, no one waits.
        assert outcomes[0][1] >= DEADLINE_S * 0.9
        assert all(seconds < 0.5 for _, seconds in outcomes[-3:]), [s for _, s in outcomes]
        assert any("paused" in r.json()["message"] for r, _ in outcomes)
        assert _recovers(api) < 15
        metrics = httpx.get(f"{fstack.gateway_url}/metrics").text
        assert f'amem_circuit_breaker_rejected_total{{dependency="{dependency}"}}' in metrics


def test_a_hung_evolution_service_does_not_slow_writes(fstack: LocalStack) -> None:
    proc = fstack.processes["evolution"]
    with client_for(fstack, KEY_A) as api:
        os.kill(proc.popen.pid, signal.SIGSTOP)
        try:
            outcomes = [_post(api, f"written while evolution hangs {i}") for i in range(8)]
        finally:
            os.kill(proc.popen.pid, signal.SIGCONT)
        assert all(r.status_code == 201 for r, _ in outcomes)
        assert max(seconds for _, seconds in outcomes) < 1.0
        ids = [r.json()["id"] for r, _ in outcomes]
        deadline = time.monotonic() + 60
        while any(api.get(f"/v1/memories/{i}").json()["status"] == "pending" for i in ids):
            assert time.monotonic() < deadline, "notes written during the hang never evolved"
            time.sleep(0.5)


def test_sigterm_drains_the_gateway_requests_in_flight(fstack: LocalStack) -> None:
    """Accepted requests finish with their answer; new ones are refused at connect; the
    gateway shuts down cleanly (the chart's preStop sleep and grace period give it the time).

    One race is the kernel's: a connection completed into the listen backlog just before the
    gateway closed its listener is closed unread (the client sees it end without an answer;
    on Kubernetes the preStop sleep keeps new connections away). Such a request must have
    written nothing."""
    gateway = fstack.processes["gateway"]
    results: list[tuple[object, float, str]] = []  # outcome, when, the request's user_id
    sent_term_at: list[float] = []

    def write() -> None:
        # A connection per request: an accepted request is unambiguous.
        with httpx.Client(
            base_url=fstack.gateway_url,
            headers={"Authorization": f"Bearer {KEY_A}"},
            timeout=60,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as c:
            while not sent_term_at or time.monotonic() < sent_term_at[0] + 5:
                user = f"drain-{uuid.uuid4().hex[:12]}"
                batch = {
                    "memories": [
                        {"content": f"drain test memory {i}", "user_id": user} for i in range(60)
                    ]
                }
                try:
                    r = c.post("/v1/memories/batch", json=batch)
                    results.append((r.status_code, time.monotonic(), user))
                except httpx.ConnectError:
                    results.append(("refused", time.monotonic(), user))
                    return
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    results.append(("closed unread", time.monotonic(), user))
                    return

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gateway.popen.send_signal(signal.SIGTERM)
    sent_term_at.append(time.monotonic())
    for t in threads:
        t.join(60)
    # Uvicorn drains, shuts the app down, then re-raises the signal: "terminated by SIGTERM".
    assert gateway.popen.wait(30) == -signal.SIGTERM
    assert "Application shutdown complete" in gateway.log_tail(20)
    try:
        outcomes = {outcome for outcome, _, _ in results}
        assert outcomes <= {201, "refused", "closed unread"}, results
        finished_after = [
            at for outcome, at, _ in results if outcome == 201 and at > sent_term_at[0]
        ]
        assert finished_after, "no request was in flight at SIGTERM: the test proved nothing"
    finally:
        fstack.start_gateway()
    with client_for(fstack, KEY_A) as api:
        for outcome, _, user in results:
            if outcome == "refused":
                continue
            page = api.get("/v1/memories", params={"user_id": user, "limit": 100})
            assert page.status_code == 200, page.text
            stored = len(page.json()["memories"])
            # Answered: all 60 stored. Closed unread: nothing written.
            assert stored == (60 if outcome == 201 else 0), (outcome, user, stored)


def test_kill_9_of_each_process_under_write_load_loses_nothing(
    fstack: LocalStack, tmp_path: Path
) -> None:
    log = tmp_path / "load.jsonl"
    loader = subprocess.Popen(
        [sys.executable, "-m", "tests.load_writer", fstack.gateway_url, KEY_A, str(log)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        time.sleep(2)
        for name in ("embedding", "evolution", "gateway", "chromadb"):
            fstack.processes[name].kill()
            time.sleep(2)  # an outage under load
            getattr(fstack, f"start_{name.removesuffix('db')}")()
            time.sleep(2)  # and recovery under load
    finally:
        loader.send_signal(signal.SIGTERM)
        loader.wait(30)

    records = [json.loads(line) for line in log.read_text().splitlines()]
    acked = [r for r in records if r.get("status") == 201]
    failed = [r for r in records if "status" in r and r["status"] != 201]
    assert len(acked) > 50, f"too little load: {len(records)} attempts"
    assert {r["status"] for r in failed} <= {503}, failed[:5]
    assert all(r["retry_after"] for r in failed)
    slowest = max(r["seconds"] for r in records)
    assert slowest < WORST_S, f"a request took {slowest}s"

    with client_for(fstack, KEY_A) as api:
        # The last restart (ChromaDB) may have left a breaker open for a few seconds.
        _recovers(api)
        for record in acked:
            got = api.get(f"/v1/memories/{record['id']}")
            assert got.status_code == 200, f"acknowledged note lost: {record}"
            assert got.json()["content"] == record["content"]
        # Searchable by both rankings: the note's unique token finds it first in BM25, and
        # the text it was embedded from (content enriched by evolution) finds it first in the
        # vectors. The restarted gateway answers dense-only until its BM25 index has loaded.
        deadline = time.monotonic() + 30
        while api.post("/v1/memories/search", json={"query": "load"}).json()["mode"] != "hybrid":
            assert time.monotonic() < deadline, "the BM25 index never loaded"
            time.sleep(0.2)
        # After its restart ChromaDB re-indexes vectors from its log in the background: notes
        # written just before the kill reach the dense index seconds later (7 s measured).
        catch_up = time.monotonic() + 30

        def embedded_text(note_id: str) -> str:
            note = api.get(f"/v1/memories/{note_id}").json()  # evolution may have enriched it
            return Note(
                **{k: note[k] for k in ("content", "context", "keywords", "tags")}
            ).embedding_text()

        def first_hit(query: str, mode: str) -> str:
            body = {"query": query, "k": 1, "mode": mode}
            return api.post("/v1/memories/search", json=body).json()["results"][0]["memory"]["id"]

        sample = acked[:: max(1, len(acked) // 40)]
        for record in sample:
            token = record["content"].rsplit(" ", 1)[1]
            while first_hit(token, "lexical") != record["id"]:
                assert time.monotonic() < catch_up, f"an acked note not found by BM25: {record}"
                time.sleep(0.5)
        # Dense: ChromaDB's vector index, rebuilt after its kill -9, can leave a few stored
        # vectors unreachable, a different few after each restart (measured 2026-12-02 on
        # this test's data: 1-11 of 46 sampled notes absent from the top 100 for their own
        # vector, none in a fresh collection of the same vectors; chroma-core/chroma#7758).
        # The audit must name them, and a rebuild of the collection must make every one
        # findable again.
        unfound = list(sample)
        while unfound and time.monotonic() < catch_up:
            unfound = [r for r in unfound if first_hit(embedded_text(r["id"]), "dense") != r["id"]]
            time.sleep(0.5)
        if unfound:
            env = dict(
                os.environ,
                AMEM_CHROMA_PORT=str(fstack.chroma_port),
                AMEM_EVOLUTION_TARGET=fstack.evolution_target,
            )
            doctor = subprocess.run(
                [sys.executable, "-m", "amem", "doctor", "--tenant", "tenant-a", "--json"],
                env=env,
                capture_output=True,
                timeout=600,
            )
            assert doctor.returncode == 1, doctor.stderr.decode()
            report = json.loads(doctor.stdout)["tenants"]["tenant-a"]
            assert {r["id"] for r in unfound} <= set(report["unreachable"]), report
            reindex = subprocess.run(
                [sys.executable, "-m", "amem", "reindex", "--tenant", "tenant-a"],
                env=env,
                capture_output=True,
                timeout=600,
            )
            assert reindex.returncode == 0, reindex.stderr.decode()
            unfound = [r for r in sample if first_hit(embedded_text(r["id"]), "dense") != r["id"]]
        assert not unfound, f"{len(unfound)} of {len(sample)} not found by dense: {unfound[:3]}"
        deadline = time.monotonic() + 120
        pending = [r["id"] for r in acked]
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} notes never evolved"
            pending = [
                i for i in pending if api.get(f"/v1/memories/{i}").json()["status"] == "pending"
            ]
            time.sleep(1)
