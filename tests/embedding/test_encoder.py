"""The encoder's backends, in process: the int8 option stays close to the full-precision one,
the direct ONNX pipeline gives sentence-transformers' vectors, and serves without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from amem.embedding.encoder import Encoder, _groups, export_dir, load_sentence_transformer
from amem.embedding.settings import Backend, EmbeddingSettings

TEXTS = [
    "Caroline went to the LGBTQ support group on Tuesday.",
    "Melanie painted a lake at sunrise last year.",
    "The production database runs PostgreSQL 16 on three replicas.",
    "I am allergic to peanuts and shellfish.",
]


def test_int8_vectors_stay_close_to_full_precision():
    full = Encoder(EmbeddingSettings(backend=Backend.ONNX)).encode(TEXTS, batch_size=8)
    # The export and quantisation are cached next to the default ONNX export.
    int8 = Encoder(EmbeddingSettings(backend=Backend.ONNX_INT8)).encode(TEXTS, batch_size=8)
    assert int8.vectors.shape == full.vectors.shape
    np.testing.assert_allclose(np.linalg.norm(int8.vectors, axis=1), 1.0, rtol=1e-4)
    agreement = (full.vectors * int8.vectors).sum(axis=1)
    assert agreement.min() > 0.95, agreement
    # Still a retrieval model: each text is nearest to itself across the two backends.
    assert ((int8.vectors @ full.vectors.T).argmax(axis=1) == np.arange(len(TEXTS))).all()


def test_length_grouped_encoding_matches_sentence_transformers():
    """The service encodes a batch in groups of similar length on the ONNX session itself; the
    vectors must be those `SentenceTransformer.encode` gives, row for row."""
    settings = EmbeddingSettings(backend=Backend.ONNX)
    encoder = Encoder(settings)
    assert encoder.session is not None  # the direct pipeline, not sentence-transformers
    long = "the production database " * 120  # past the 256-token limit
    texts = [*TEXTS, "ok", long, "  padded with spaces  ", *(t.upper() for t in TEXTS)]
    ours = encoder.encode(texts, batch_size=4)
    theirs = load_sentence_transformer(settings, "onnx").encode(
        texts, batch_size=4, normalize_embeddings=True, show_progress_bar=False
    )
    np.testing.assert_allclose(ours.vectors, theirs, atol=1e-5)
    # Token counts are from before truncation.
    assert ours.token_counts[5] > encoder.max_tokens
    assert ours.token_counts[4] == 3  # [CLS] ok [SEP]


def test_groups_keep_padding_small():
    lengths = [10, 80, 11, 79, 12, 40, 10, 81]
    groups = _groups(lengths, max_size=3)
    assert sorted(k for g in groups for k in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 3
        sizes = [lengths[k] for k in group]
        assert max(sizes) * len(sizes) <= 1.3 * sum(sizes)
    assert len(groups) == 4  # {10,10,11} {12} {40} {79,80,81}


def test_onnx_threads_do_not_spin_unless_asked():
    def spinning(encoder: Encoder) -> str:
        options = encoder.session.get_session_options()
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    assert spinning(Encoder(EmbeddingSettings(backend=Backend.ONNX))) == "0"
    assert spinning(Encoder(EmbeddingSettings(backend=Backend.ONNX, onnx_spin_wait=True))) == "1"


# Run in a fresh interpreter where torch and sentence-transformers cannot be imported, as in
# the embedding image.
_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None
sys.modules["sentence_transformers"] = None
from amem.embedding.encoder import Encoder
from amem.embedding.settings import EmbeddingSettings
encoder = Encoder(EmbeddingSettings(backend=sys.argv[1], cache_dir=sys.argv[2]))
texts = json.loads(sys.argv[3])
print(json.dumps([encoder.device, encoder.encode(texts, batch_size=4).vectors.tolist()]))
"""


@pytest.mark.parametrize("backend", [Backend.ONNX, Backend.ONNX_INT8])
def test_a_checked_export_serves_without_torch(backend):
    settings = EmbeddingSettings(backend=backend)
    expected = Encoder(settings).encode(TEXTS, batch_size=4).vectors  # makes the export
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_TORCH,
            backend.value,
            str(settings.cache_dir),
            json.dumps(TEXTS),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    device, vectors = json.loads(out.stdout)
    assert device == "cpu"  # auto, with no torch to ask about CUDA
    np.testing.assert_allclose(np.array(vectors), expected, atol=1e-6)


def test_without_an_export_or_torch_the_error_says_what_to_install(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, "onnx", str(tmp_path), "[]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "amem[embedding-export]" in out.stderr
    assert str(export_dir(EmbeddingSettings(cache_dir=tmp_path))) in out.stderr


@pytest.mark.skipif(
    sys.platform != "linux" or os.path.exists("/dev/nvidiactl"), reason="an NVIDIA driver here"
)
def test_auto_device_without_a_gpu_driver_never_imports_torch():
    """Without a driver there is no CUDA; asking torch would cost ~160 MiB resident for
    nothing (the ONNX backends never use it)."""
    Encoder(EmbeddingSettings())  # the export exists (made here if need be)
    code = (
        "import sys; from amem.embedding.encoder import Encoder; "
        "from amem.embedding.settings import EmbeddingSettings; "
        "e = Encoder(EmbeddingSettings()); print(e.device, e.backend, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["cpu", "onnx", "False"]
