"""The encoder's backends, in process: the int8 option stays close to the full-precision one."""

from __future__ import annotations

import numpy as np

from amem.embedding.encoder import Encoder
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
