"""`amem backup|restore|backups|export|import`, run as the real CLI against a stack of its own
(ChromaDB and gateway; the session's embedding service), with two targets: a directory, and
an S3 bucket served by moto's server mode (a TEST DOUBLE of S3, speaking its HTTP API)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import chromadb
import httpx
import pytest

from amem.core.quotas import UsageStore, today
from amem.devstack import LocalStack, Process, free_port, http_ok, wait_until
from tests.conftest import KEY_A, KEY_B, client_for, create, eventually

KEY_C = "key-tenant-c-" + uuid.uuid4().hex
ADMIN = "admin-" + uuid.uuid4().hex
BUCKET = "amem-backups"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server on a free port; yields its endpoint URL."""
    port = free_port()
    moto = Process(
        "moto",
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        dict(os.environ),
        tmp_path_factory.mktemp("moto") / "moto.log",
    )
    moto.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(moto, http_ok(f"{url}/moto-api/"), 60, "answering")
        boto3.client("s3", endpoint_url=url, **_boto_args()).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        moto.stop()


def _boto_args() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_REGION"],
    }


@pytest.fixture(scope="module")
def bstack(stack: LocalStack, tmp_path_factory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("backup")
    s = LocalStack.for_tenants(
        root,
        {"tenant-a": KEY_A, "tenant-b": KEY_B, "tenant-c": KEY_C},
        env={
            "AMEM_ADMIN_API_KEYS": json.dumps([ADMIN]),
            "AMEM_KEYS_REFRESH_S": "1",
            # Retrieval counts land before a test's snapshot of the notes, not at a random
            # moment of the next 10 s (one landed after a restore and changed the notes).
            "AMEM_ACCESS_FLUSH_S": "0.5",
        },
        embedding_from=stack,
        evolution=False,
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


def amem(stack: LocalStack, *args: str, s3_url: str | None = None, input: bytes | None = None):
    """Run the `amem` CLI against `stack`'s ChromaDB."""
    env = dict(os.environ, AMEM_CHROMA_PORT=str(stack.chroma_port), **S3_ENV)
    if s3_url:
        env["AWS_ENDPOINT_URL_S3"] = s3_url
    return subprocess.run(
        [sys.executable, "-m", "amem", *args],
        env=env,
        capture_output=True,
        timeout=300,
        input=input,
    )


def all_notes(api: httpx.Client) -> dict[str, dict]:
    notes, cursor = {}, None
    while True:
        r = api.get("/v1/memories", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        notes |= {n["id"]: n for n in body["memories"]}
        cursor = body.get("next_cursor")
        if not cursor:
            return notes


def without(note: dict, *fields: str) -> dict:
    return {k: v for k, v in note.items() if k not in fields}


QUERIES = ["who plays the violin?", "deployment schedule", "favourite food"]


def searches(api: httpx.Client) -> dict[tuple[str, str], list[str]]:
    """Result ids of a few searches, once the gateway's BM25 index has loaded."""
    deadline = time.monotonic() + 20
    while api.post("/v1/memories/search", json={"query": "x"}).json()["mode"] != "hybrid":
        assert time.monotonic() < deadline, "the BM25 index never loaded"
        time.sleep(0.2)
    results = {}
    for query in QUERIES:
        for mode in ("dense", "hybrid"):
            r = api.post("/v1/memories/search", json={"query": query, "k": 5, "mode": mode})
            assert r.status_code == 200, r.text
            results[(query, mode)] = [h["memory"]["id"] for h in r.json()["results"]]
    return results


def seed(api: httpx.Client, n: int, user: str) -> list[dict]:
    topics = [
        "Alice plays the violin in the city orchestra",
        "The deployment schedule moved to Thursdays",
        "Bob's favourite food is ramen with extra egg",
        "The staging cluster runs on spot instances",
    ]
    made: list[dict] = []
    for i in range(n):
        fields = {
            "content": f"{topics[i % len(topics)]} (note {i} of {user})",
            "user_id": user,
            "tags": [f"t{i % 3}"],
            "keywords": [f"k{i}"],
            "metadata": {"i": i, "even": i % 2 == 0},
        }
        if made:
            fields["links"] = [made[-1]["id"]]
            fields["follows"] = made[-1]["id"]
        made.append(create(api, **fields))
    return made


def _tokens(api: httpx.Client) -> int:
    r = api.get("/v1/usage")
    assert r.status_code == 200, r.text
    return r.json()["llm_tokens"]


def test_restore_from_s3_after_losing_everything_gives_back_notes_links_and_search(
    bstack: LocalStack, s3: str
) -> None:
    with (
        client_for(bstack, KEY_A) as a,
        client_for(bstack, KEY_B) as b,
        client_for(bstack, ADMIN) as admin,
    ):
        # A managed key of a tenant that holds no notes, and a day's LLM usage as evolution
        # counts it: neither lives in a tenant's collection.
        issued = admin.post("/v1/admin/keys", json={"tenant": "acme", "name": "dr"}).json()
        usage = UsageStore("127.0.0.1", bstack.chroma_port)
        asyncio.run(usage.add("tenant-a", today(), 500))
        managed = client_for(bstack, issued["key"])
        assert managed.get("/v1/memories").status_code == 200 and _tokens(a) == 500
        seed(a, 24, "alice")
        seed(b, 5, "bob")
        # Evolution-shaped fields survive too: a PATCH gives a note changed fields.
        first = next(iter(all_notes(a)))
        assert a.patch(f"/v1/memories/{first}", json={"context": "patched"}).status_code == 200
        found_before = searches(a)
        time.sleep(1.5)  # searches count as retrievals, written behind within a second
        before_a, before_b = all_notes(a), all_notes(b)

        done = amem(bstack, "backup", f"s3://{BUCKET}/prod", s3_url=s3)
        assert done.returncode == 0, done.stderr.decode()
        assert b"29 notes of 3 tenants" in done.stdout  # acme holds none
        assert b"amemsys-api-keys: 1 records" in done.stdout

        # Disaster: every collection dropped behind the services' backs.
        chroma = chromadb.HttpClient(host="127.0.0.1", port=bstack.chroma_port)
        for col in chroma.list_collections():
            chroma.delete_collection(col.name)
        # The gateway notices without a restart: a plain 404, not an error.
        assert a.get(f"/v1/memories/{first}").status_code == 404
        eventually(lambda: managed.get("/v1/memories").status_code == 401, "key still works")
        assert _tokens(a) == 0

        done = amem(bstack, "restore", f"s3://{BUCKET}/prod", s3_url=s3)
        assert done.returncode == 0, done.stderr.decode()
        after_a, after_b = all_notes(a), all_notes(b)
        assert {k: without(v, "updated_at") for k, v in after_a.items()} == {
            k: without(v, "updated_at") for k, v in before_a.items()
        }
        assert after_b.keys() == before_b.keys()
        assert after_a[first]["context"] == "patched"
        assert any(n["links"] for n in after_a.values())
        # Hybrid search waits for the gateway's BM25 cache to see the restore (a pull).
        deadline = time.monotonic() + 20
        while searches(a) != found_before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert searches(a) == found_before
        eventually(lambda: managed.get("/v1/memories").status_code == 200, "key not restored")
        assert _tokens(a) == 500

        # A restore into a live deployment keeps what changed since: a key revoked after the
        # backup stays revoked, and a counter that grew keeps its count.
        assert admin.delete(f"/v1/admin/keys/{issued['id']}").status_code == 200
        asyncio.run(usage.add("tenant-a", today(), 100))
        done = amem(bstack, "restore", f"s3://{BUCKET}/prod", s3_url=s3)
        assert done.returncode == 0, done.stderr.decode()
        assert b"amemsys-api-keys: 0 records restored" in done.stdout
        time.sleep(2)  # two key refreshes
        assert managed.get("/v1/memories").status_code == 401 and _tokens(a) == 600
        managed.close()

        # Restoring again, into a deployment that has every note, duplicates nothing.
        done = amem(bstack, "restore", f"s3://{BUCKET}/prod", "--tenant", "tenant-b", s3_url=s3)
        assert done.returncode == 0, done.stderr.decode()
        assert all_notes(b).keys() == before_b.keys()


def test_backups_are_listed_pruned_and_checked(bstack: LocalStack, tmp_path: Path) -> None:
    target = tmp_path / "backups"
    with client_for(bstack, KEY_B) as b:
        seed(b, 2, f"user-{uuid.uuid4().hex[:6]}")
    # An unfinished backup (no manifest) is never listed nor restored, and is cleaned up.
    (target / "amem-backup-20000101T000000.000Z" / "tenants").mkdir(parents=True)
    names = []
    for _ in range(3):
        done = amem(bstack, "backup", str(target), "--tenant", "tenant-b", "--keep", "2")
        assert done.returncode == 0, done.stderr.decode()
        names.append(done.stdout.decode().split(":")[0])
    listed = amem(bstack, "backups", str(target)).stdout.decode().split()
    assert listed == names[1:]
    assert sorted(p.name for p in target.iterdir()) == names[1:]

    manifest = json.loads((target / names[-1] / "manifest.json").read_text())
    assert manifest["format"] == "amem-backup/1"
    assert list(manifest["tenants"]) == ["tenant-b"]
    # A damaged file is refused by its checksum, before anything is written.
    data = target / names[-1] / "tenants" / "tenant-b.jsonl.gz"
    data.write_bytes(data.read_bytes()[:-8] + b"garbage!")
    done = amem(bstack, "restore", str(target))
    assert done.returncode == 1
    assert b"corrupt" in done.stderr
    for args, message in [
        (["restore", str(target), "--backup", "amem-backup-nope"], b"no complete backup named"),
        (["restore", str(tmp_path / "empty")], b"no complete backup in"),
        (["backup", str(target), "--tenant", "no-such-tenant"], b"no such tenant"),
        (["backup", str(target), "--tenant", "Bad Name!"], b"is not a tenant id"),
    ]:
        done = amem(bstack, *args)
        assert done.returncode != 0, args
        assert message in done.stderr, (args, done.stderr)


def test_a_backup_taken_while_writes_continue_is_complete_and_has_each_note_once(
    bstack: LocalStack, tmp_path: Path
) -> None:
    user = f"user-{uuid.uuid4().hex[:6]}"
    with client_for(bstack, KEY_A) as a:
        before = {n["id"] for n in seed(a, 10, user)}
        deleted = a.get("/v1/memories", params={"user_id": user, "limit": 2}).json()["memories"]
        for note in deleted:
            assert a.delete(f"/v1/memories/{note['id']}").status_code == 200
        stop = threading.Event()
        written: list[str] = []

        def write_on() -> None:
            with client_for(bstack, KEY_A) as w:
                i = 0
                while not stop.is_set():
                    r = w.post("/v1/memories", json={"content": f"during backup {i}"})
                    if r.status_code == 201:
                        written.append(r.json()["id"])
                    i += 1

        writer = threading.Thread(target=write_on)
        writer.start()
        time.sleep(0.5)
        try:
            acked_before = set(written)
            done = amem(bstack, "backup", str(tmp_path), "--tenant", "tenant-a")
        finally:
            stop.set()
            writer.join()
        assert done.returncode == 0, done.stderr.decode()
        assert acked_before, "the writer never got going"
        count_after_writes = len(all_notes(a))

        name = done.stdout.decode().split(":")[0]
        with gzip.open(tmp_path / name / "tenants" / "tenant-a.jsonl.gz") as f:
            lines = [json.loads(line) for line in f]
        ids = [line["id"] for line in lines]
        assert len(ids) == len(set(ids)), "a note appears twice"
        deleted_ids = {n["id"] for n in deleted}
        assert (before - deleted_ids) | acked_before <= set(ids)
        assert not deleted_ids & set(ids)
        assert all(len(line["embedding"]) == 384 for line in lines)

        # Restoring into the live tenant replaces by id: nothing duplicated, later notes kept.
        done = amem(bstack, "restore", str(tmp_path), "--tenant", "tenant-a")
        assert done.returncode == 0, done.stderr.decode()
        assert len(all_notes(a)) == count_after_writes


def test_export_and_import_move_a_tenant_and_refuse_bad_lines(
    bstack: LocalStack, tmp_path: Path
) -> None:
    with client_for(bstack, KEY_B) as b, client_for(bstack, KEY_C) as c:
        seed(b, 3, f"user-{uuid.uuid4().hex[:6]}")
        export = tmp_path / "tenant-b.jsonl"
        done = amem(bstack, "export", "--tenant", "tenant-b", "-o", str(export))
        assert done.returncode == 0, done.stderr.decode()
        lines = [json.loads(line) for line in export.read_text().splitlines()]
        assert len(lines) == len(all_notes(b))

        # Into another tenant (a migration), twice: the second import changes nothing.
        for _ in range(2):
            done = amem(bstack, "import", str(export), "--tenant", "tenant-c")
            assert done.returncode == 0, done.stderr.decode()
        moved = all_notes(c)
        assert {k: without(v, "updated_at") for k, v in moved.items()} == {
            k: without(v, "updated_at") for k, v in all_notes(b).items()
        }

        # Notes from elsewhere: only content needed; the embedding service embeds them.
        foreign = tmp_path / "foreign.jsonl"
        foreign.write_text(
            json.dumps({"content": "The lighthouse keeper collects barometers"})
            + "\n"
            + json.dumps({"content": "Tea at four", "tags": ["habit"], "user_id": "zed"})
            + "\n"
        )
        args = ["import", str(foreign), "--tenant", "tenant-c"]
        done = amem(bstack, *args)
        assert done.returncode == 1
        assert b"has no embedding" in done.stderr
        target = f"127.0.0.1:{bstack.embedding_port}"
        for _ in range(2):
            done = amem(bstack, *args, "--embedding-target", target)
            assert done.returncode == 0, done.stderr.decode()
        assert len(all_notes(c)) == len(moved) + 2
        r = c.post("/v1/memories/search", json={"query": "barometer collection", "k": 1})
        assert r.json()["results"][0]["memory"]["content"].startswith("The lighthouse keeper")

        # A bad line anywhere: nothing is written, and the error names the line and field.
        bad = tmp_path / "bad.jsonl"
        bad.write_text(
            json.dumps({"content": "fine", "embedding": [0.1] * 384})
            + "\n"
            + json.dumps({"content": "bad", "retrieval_count": "many"})
            + "\n"
        )
        count = len(all_notes(c))
        done = amem(bstack, "import", str(bad), "--tenant", "tenant-c")
        assert done.returncode == 1
        assert b"line 2: retrieval_count" in done.stderr
        assert len(all_notes(c)) == count


def test_one_unreadable_record_is_named_and_skipped_and_every_other_tenant_is_backed_up(
    bstack: LocalStack, tmp_path: Path
) -> None:
    """A record that does not decode as a note (FAULT INJECTION: written straight into
    ChromaDB, as a corrupted store or an older version might have left it) used to abort the
    backup at its tenant, with no manifest and the later tenants not backed up."""
    from datetime import UTC, datetime

    from amem.core.model import Note
    from amem.core.store import to_metadata, to_micros

    client = chromadb.HttpClient(host="127.0.0.1", port=bstack.chroma_port)
    col = client.get_or_create_collection("amem-aaa-corrupt", embedding_function=None)
    good, bad, ancient = (
        Note(content=c, timestamp=datetime(2024, 1, 1, tzinfo=UTC))
        for c in ("readable", "unreadable", "from year 0")
    )
    metas = [
        {k: v for k, v in to_metadata(n).items() if v is not None} for n in (good, bad, ancient)
    ]
    metas[1]["status"] = "not-a-status"
    # 0001-01-01T00:00:00+01:00, stored before the API checked the range: an hour before year 1.
    metas[2]["timestamp"] = to_micros(datetime.min.replace(tzinfo=UTC)) - 3_600_000_000
    col.add(
        ids=[good.id, bad.id, ancient.id],
        embeddings=[[0.1] * 384] * 3,
        documents=["readable", "unreadable", "from year 0"],
        metadatas=metas,
    )
    try:
        done = amem(bstack, "backup", str(tmp_path / "b"))
        assert done.returncode == 1
        assert bad.id.encode() in done.stderr and b"not-a-status" in done.stderr
        [folder] = (tmp_path / "b").iterdir()
        manifest = json.loads((folder / "manifest.json").read_text())
        tenants = manifest["tenants"]
        # "aaa-corrupt" sorts first: every tenant after it is in the backup too.
        assert {"aaa-corrupt", "tenant-a", "tenant-b", "tenant-c"} <= set(tenants)
        assert list(tenants["aaa-corrupt"]["unreadable"]) == [bad.id]
        assert tenants["aaa-corrupt"]["notes"] == 2
        assert all("unreadable" not in e for t, e in tenants.items() if t != "aaa-corrupt")
        with gzip.open(folder / tenants["aaa-corrupt"]["file"]) as f:
            saved = {line["id"]: line for line in map(json.loads, f)}
        assert set(saved) == {good.id, ancient.id}
        assert saved[ancient.id]["timestamp"].startswith("0001-01-01T00:00:00")

        out = tmp_path / "corrupt.jsonl"
        done = amem(bstack, "export", "--tenant", "aaa-corrupt", "-o", str(out))
        assert done.returncode == 1 and bad.id.encode() in done.stderr
        assert len(out.read_text().splitlines()) == 2
    finally:
        client.delete_collection("amem-aaa-corrupt")
