"""The embedding service over gRPC: readiness, limits, truncation and dynamic batching."""

from __future__ import annotations

import asyncio
import re
import sys
import time

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from amem.core.errors import InvalidArgument
from amem.devstack import Process, free_port
from amem.embedding.client import EmbeddingClient
from amem.embedding.v1 import embedding_pb2, embedding_pb2_grpc


def _embed(stack, texts):
    with grpc.insecure_channel(stack.embedding_target) as ch:
        return embedding_pb2_grpc.EmbeddingServiceStub(ch).Embed(
            embedding_pb2.EmbedRequest(texts=texts), timeout=30
        )


def test_model_info_and_normalised_vectors(stack):
    with grpc.insecure_channel(stack.embedding_target) as ch:
        info = embedding_pb2_grpc.EmbeddingServiceStub(ch).GetModelInfo(
            embedding_pb2.GetModelInfoRequest(), timeout=10
        )
    assert info.dimensions == 384 and info.max_tokens == 256 and info.device == "cpu"
    reply = _embed(stack, ["a sunny day at the beach", "sunshine on the seaside", "tax forms"])
    vectors = np.array([e.values for e in reply.embeddings])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # meaning, not noise


def test_long_text_is_truncated_and_says_so(stack):
    reply = _embed(stack, ["short", "word " * 600])
    short, long = reply.embeddings
    assert not short.truncated and short.token_count < 10
    assert long.truncated and long.token_count > 256


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ([""], "texts[0]"),
        (["ok", "x" * 40_000], "texts[1]"),
        (["t"] * 300, "too many"),
    ],
)
def test_limits_give_invalid_argument(stack, texts, message):
    with pytest.raises(grpc.RpcError) as err:
        _embed(stack, texts)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_client_adapter_maps_status_codes(stack):
    async def go():
        client = EmbeddingClient(stack.embedding_target)
        try:
            with pytest.raises(InvalidArgument):
                await client.embed([])
            return await client.embed(["hello"])
        finally:
            await client.close()

    assert len(asyncio.run(go()).vectors[0]) == 384


def _batch_histogram(stack) -> dict[float, float]:
    text = httpx.get(f"http://127.0.0.1:{stack.embedding_metrics_port}/metrics").text
    return {
        float(m.group(1)): float(m.group(2))
        for m in re.finditer(r'amem_embedding_batch_size_texts_bucket\{le="([^"+]+)"\} (\S+)', text)
    }


def test_concurrent_requests_are_batched(stack):
    before = _batch_histogram(stack)

    async def go():
        client = EmbeddingClient(stack.embedding_target)
        try:
            return await asyncio.gather(
                *[client.embed([f"concurrent text number {i}"]) for i in range(64)]
            )
        finally:
            await client.close()

    replies = asyncio.run(go())
    assert all(len(r.vectors) == 1 for r in replies)
    after = _batch_histogram(stack)
    batches = after[512.0] - before[512.0]
    single = after[1.0] - before[1.0]
    # 64 one-text calls arrived together: far fewer model calls than requests, most of them > 1.
    assert batches < 32, (before, after)
    assert single < batches / 2, (before, after)


def test_health_is_not_serving_until_the_model_is_loaded(stack, tmp_path):
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = stack._env(
        AMEM_EMBEDDING_LISTEN=target,
        AMEM_EMBEDDING_METRICS_PORT="0",
        AMEM_EMBEDDING_BACKEND="torch",  # the other backend than the stack's, loaded from scratch
    )
    proc = Process(
        "embedding-torch", [sys.executable, "-m", "amem.embedding"], env, tmp_path / "e.log"
    )
    proc.start()
    try:
        seen = []
        refused = 0
        deadline = time.monotonic() + 120
        with grpc.insecure_channel(target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                proc.check_alive()
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                except grpc.RpcError:
                    time.sleep(0.02)
                    continue
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                try:  # Embed refuses while loading...
                    embedding_pb2_grpc.EmbeddingServiceStub(ch).Embed(
                        embedding_pb2.EmbedRequest(texts=["early"]), timeout=5
                    )
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE
                    refused += 1
                # ...(it may succeed in the instant between the model loading and health
                # turning SERVING, which the next Check sees)
                time.sleep(0.02)
            assert seen == [
                health_pb2.HealthCheckResponse.NOT_SERVING,
                health_pb2.HealthCheckResponse.SERVING,
            ]
            assert refused >= 1
            # Both backends compute the same embedding.
            torch_vec = np.array(
                embedding_pb2_grpc.EmbeddingServiceStub(ch)
                .Embed(embedding_pb2.EmbedRequest(texts=["parity check"]), timeout=30)
                .embeddings[0]
                .values
            )
            info = embedding_pb2_grpc.EmbeddingServiceStub(ch).GetModelInfo(
                embedding_pb2.GetModelInfoRequest(), timeout=5
            )
        assert info.backend == "torch"
        onnx_vec = np.array(_embed(stack, ["parity check"]).embeddings[0].values)
        assert float(torch_vec @ onnx_vec) > 0.999
    finally:
        proc.stop()


def test_interactive_requests_overtake_background_work(stack):
    """A backlog of evolution's background work never holds a REST request up for long."""
    finished: list[str] = []

    async def go():
        client = EmbeddingClient(stack.embedding_target, timeout_s=120)

        async def call(name, texts, background):
            await client.embed(texts, background=background)
            finished.append(name)

        # Long texts, so that the backlog takes seconds even on an idle machine.
        filler = " ".join(f"word{k} of a long background sentence" for k in range(8))
        try:
            backlog = [
                asyncio.create_task(call(f"bg{i}", [f"{i} {j} {filler}" for j in range(48)], True))
                for i in range(12)
            ]
            await asyncio.sleep(0.3)  # the backlog is queued and its first chunk running
            await call("interactive", ["a question somebody waits for"], False)
            await asyncio.gather(*backlog)
        finally:
            await client.close()

    asyncio.run(go())
    # 576 long background texts take seconds on a CPU; the interactive call went ahead of
    # nearly all of them (first in, first out, it would finish last).
    assert finished.index("interactive") <= 3, finished
    assert len(finished) == 13
