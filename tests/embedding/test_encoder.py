"""The encoder's backends, in process: the int8 option stays close to the full-precision one."""

from __future__ import annotations

import numpy as np

from amem.embedding.encoder import Encoder, _groups
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
    encoder = Encoder(EmbeddingSettings(backend=Backend.ONNX))
    long = "the production database " * 120  # past the 256-token limit
    texts = [*TEXTS, "ok", long, "  padded with spaces  ", *(t.upper() for t in TEXTS)]
    ours = encoder.encode(texts, batch_size=4)
    theirs = encoder.model.encode(
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
        options = encoder.model[0].auto_model.model.get_session_options()
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    assert spinning(Encoder(EmbeddingSettings(backend=Backend.ONNX))) == "0"
    assert spinning(Encoder(EmbeddingSettings(backend=Backend.ONNX, onnx_spin_wait=True))) == "1"
