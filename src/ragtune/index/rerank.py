"""Optional second stage: re-score the fused candidates with a cross-encoder from a local folder.

Off by default (no cross-encoder is packaged). Turn on with ``retrieval.rerank = true`` and
``retrieval.reranker_model = "/path/to/cross-encoder"``.
"""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import ConfigError, ModelError
from ragtune.index.search import Scored


class Reranker:
    def __init__(self, folder: str | Path, device: str = "cpu"):
        from sentence_transformers import CrossEncoder

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"retrieval.reranker_model '{folder}': not a local cross-encoder folder; "
                              "give a folder path or set retrieval.rerank = false")
        try:
            self.model = CrossEncoder(str(folder), device=device)
        except Exception as e:
            raise ModelError(f"retrieval.reranker_model '{folder}': cannot be loaded as a cross-encoder "
                             f"({type(e).__name__}: {e})") from None

    @classmethod
    def from_settings(cls, retrieval) -> Reranker:
        if not retrieval.reranker_model:
            raise ConfigError("retrieval.rerank is on but retrieval.reranker_model is not set; "
                              "give a local cross-encoder folder or set retrieval.rerank = false")
        return cls(retrieval.reranker_model)

    def rerank(self, query: str, candidates: list[Scored]) -> list[Scored]:
        """Candidates re-ordered by the cross-encoder; its score replaces the fused one."""
        if not candidates:
            return []
        scores = self.model.predict([(query, c.hit.text) for c in candidates], show_progress_bar=False)
        for c, s in zip(candidates, scores):
            c.score = float(s)
        return sorted(candidates, key=lambda c: -c.score)
