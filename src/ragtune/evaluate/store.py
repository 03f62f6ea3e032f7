"""What an evaluation keeps on disk: the answer log (for resuming) and results.json (atomic)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_write_json
from ragtune.evaluate.qa import QAItem


def answer_setup(settings: Any, retrieval: bool, system: str | None = None, model: Any = None) -> str:
    """A short hash of what shapes a variant's answers besides the model's name: generation settings and prompts,
    for RAG variants the chunking, embedder, retrieval and context settings, and for a local model folder or file
    its weights' `weights_stamp`. A resumed run re-asks a question whose recorded answer was made under another
    setup (or by weights retrained in the same folder) instead of mixing the two."""
    from ragtune.models import prompts

    parts: dict[str, Any] = {
        "generator": settings.generator.model_dump(exclude={"model", "api_key_env", "device"}),  # model: logged apart
        "system": system, "prompts": [prompts.CLOSED_BOOK_SYSTEM]}
    stamp = weights_stamp(model)
    if stamp:  # aliases and endpoints have none; their logs keep their hashes
        parts["weights"] = stamp
    if retrieval:
        sections = ("chunking", "embedder", "retrieval", "rag")
        parts.update({name: getattr(settings, name).model_dump() for name in sections},
                     prompts=list(prompts.template_text(settings.rag.template)))
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf")  # the formats a model folder holds its weights in


def weights_stamp(model: Any) -> str:
    """The name, size and modification time of a local model's weight files (a folder's ``*.safetensors``,
    ``*.bin`` or ``*.gguf``, or a file given itself), and for an adapter those of its base (a RAFT adapter trained
    on a fine-tuned one): cheap to read, and changed by any retraining into the same folder."""
    if not isinstance(model, (str, Path)) or not Path(model).exists():
        return ""
    path = Path(model)
    files = sorted(f for pattern in WEIGHT_FILES for f in path.glob(pattern)) if path.is_dir() else [path]
    stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    if (path / "adapter_config.json").is_file():
        from ragtune.models.loading import resolve_model

        base = weights_stamp(resolve_model(str(path)).base)
        stamp += f"|{base}" if base else ""
    return stamp


class PredictionLog:
    """Append-only JSONL of answered questions; a re-run skips what is already there for the same model and setup."""

    def __init__(self, path: Path):
        self.path = path
        self._done: dict[tuple[str, str, str, str, str], dict] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interruption: that question is asked again
                self._done[self._key(rec)] = rec

    @staticmethod
    def _key(rec: dict) -> tuple[str, str, str, str, str]:
        return rec["variant"], rec["model"], rec["id"], rec["question"], rec.get("setup", "")

    def get(self, variant: str, model: str, item: QAItem, setup: str = "") -> dict | None:
        rec = self._done.get((variant, model, item.id, item.question, setup))
        return rec if rec and rec.get("answers") == item.answers else None

    def usage(self, variant: str, model: str) -> dict:
        """Peak RSS and seconds recorded by earlier runs of this variant (empty when none)."""
        path = self.path.with_name("usage.json")
        try:
            return json.loads(path.read_text(encoding="utf-8")).get(f"{variant}|{model}", {})
        except (OSError, json.JSONDecodeError):
            return {}

    def record_usage(self, variant: str, model: str, peak_rss_mb: float | None, seconds: float) -> None:
        path = self.path.with_name("usage.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        data[f"{variant}|{model}"] = {"peak_rss_mb": peak_rss_mb, "seconds": seconds}
        write_json(path, data)

    def append(self, rec: dict) -> None:
        """Log an answer; one already logged for the same question, answers and setup is not written twice."""
        logged = self._done.get(self._key(rec))
        if logged is not None and logged.get("answers") == rec.get("answers"):
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._done[self._key(rec)] = rec


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write then rename, so a reader never sees half a file."""
    atomic_write_json(path, _clean(data))
