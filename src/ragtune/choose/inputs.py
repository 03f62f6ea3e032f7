"""What a `ragtune choose` stage was made from, so a re-run redoes exactly the stages whose inputs changed.

Each input gets a fingerprint: DOCS by (relative path, size, sha256) per file, the QA and training files the
same way, the settings by their effective values (but those no stage reads). A file is read only when its size
or mtime differs from what the last run recorded (``choose.json`` ``files``), so a re-run costs a directory walk,
and a copied, checked-out or touched folder with the same contents is not taken for new data. ``choose.json`` keeps them under ``inputs``; `stale` maps changed inputs to the stages that
depend on them (`DEPENDS`), and `drop` removes those stages' records and the outputs choose wrote for them (never
anything else in ``--out``). ``--out`` is locked for the whole run with the knowledge base's writer lock.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragtune.errors import StorageError
from ragtune.index.writes import LOCK_FILE, holder, writer_lock
from ragtune.types import Example

# the input each stage is made from; evaluate depends on everything (the constraints only shape the advice)
DEPENDS: dict[str, set[str]] = {
    "index": {"docs", "indexing"},
    "check": {"qa", "settings"},
    "split": {"qa", "settings"},
    "train_data": {"qa", "train", "docs", "indexing", "settings"},
    "tune": {"qa", "docs", "indexing", "settings"},
    "finetune": {"train", "settings"},  # + qa / docs when the data comes from them (`training_inputs`)
    "raft": {"qa", "train", "docs", "indexing", "settings"},  # built with the tuned k, from the training data
    "evaluate": {"qa", "train", "docs", "indexing", "settings", "constraints"},
}
LABEL = {"docs": "DOCS", "qa": "qa file", "train": "training file", "indexing": "indexing settings",
         "settings": "settings", "constraints": "constraints", "training data": "training data"}
# what choose writes for a stage, relative to --out (`--fresh` removes all of these and choose.json)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "index": ("kb",), "tune": ("tune",), "finetune": ("finetuned",), "raft": ("raft",),
    "evaluate": ("predictions.jsonl", "usage.json", "results.json", "advice.json", "index.html"),
}
STATE = "choose.json"


def files_manifest(paths: Iterable[Path]) -> Iterator[tuple[str, int, int]]:
    """(path relative to the argument, size, mtime_ns) of every file under ``paths``, sorted."""
    for root in paths:
        if root.is_file():
            st = root.stat()
            yield root.name, st.st_size, st.st_mtime_ns
        elif root.is_dir():
            for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
                st = f.stat()
                yield str(f.relative_to(root)), st.st_size, st.st_mtime_ns


def content_digest(paths: Iterable[Path], known: dict[str, list[Any]], seen: dict[str, list[Any]]) -> str:
    """A digest of (relative path, size, sha256) of every file under ``paths``. ``known`` maps a file's absolute
    path to its recorded [size, mtime_ns, sha256]: a file whose size and mtime match is not read again; every
    file's record, new or reused, goes into ``seen``."""
    rows = []
    for root in paths:
        for rel, size, mtime in files_manifest([root]):
            path = root if root.is_file() else root / rel
            key = str(path.resolve())
            record = known.get(key)
            if not record or record[0] != size or record[1] != mtime:
                sha = hashlib.sha256()
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        sha.update(block)
                record = [size, mtime, sha.hexdigest()]
            seen[key] = record
            rows.append((rel, size, record[2]))
    return digest(rows)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprints(docs: list[Path], qa: Path | None, train: Path | None, settings: Any, model: str, metric: str,
                 constraints: dict[str, Any], known: dict[str, list[Any]] | None = None) -> dict[str, str]:
    """One short digest per input; ``settings`` is the effective `Settings` (defaults, files, env, overrides);
    ``known`` the file hashes recorded by the last run (see `content_digest`), updated in place."""
    known = {} if known is None else known
    seen: dict[str, list[Any]] = {}
    dump = settings.model_dump(mode="json")
    indexing = {k: dump.pop(k) for k in ("chunking", "embedder", "store")}
    dump.pop("serve", None)
    # settings no stage reads (`serve`; raft.kb_*, read by `finetune --kb KB --raft` alone) change nothing here
    dump["raft"] = {k: v for k, v in dump.get("raft", {}).items() if not k.startswith("kb_")}
    prints = {"docs": content_digest(docs, known, seen),
              "qa": content_digest([qa], known, seen) if qa else digest(None),
              "train": content_digest([train], known, seen) if train else digest(None), "indexing": digest(indexing),
              "settings": digest([dump, model, metric]), "constraints": digest(constraints)}
    known.clear()  # files no longer among the inputs are forgotten
    known.update(seen)
    return prints


def training_inputs(train: Path | None, declared_train_split: bool) -> set[str]:
    """What the training examples are made from: the --train file, the QA set's train split, or DOCS."""
    if train is not None:
        return {"train", "settings"}
    return {"qa", "settings"} if declared_train_split else {"qa", "docs", "indexing", "settings"}


def stale(old: dict[str, str], new: dict[str, str], state: dict[str, Any], finetune_from: set[str]
          ) -> tuple[list[str], list[str]]:
    """The inputs that changed since the stages in ``state`` were made, and the recorded stages made from them."""
    if not old:
        return [], []
    changed = [k for k in new if old.get(k) != new[k]]
    needs = {**DEPENDS, "finetune": DEPENDS["finetune"] | finetune_from}
    redo = [s for s in needs if s in state and needs[s] & set(changed)]
    return changed, redo


def drop(out: Path, state: dict[str, Any], stages: Iterable[str]) -> None:
    """Forget ``stages`` and remove the outputs choose wrote for them (an answer log of old questions, training
    checkpoints of old data)."""
    for stage in stages:
        state.pop(stage, None)
        for name in OUTPUTS.get(stage, ()):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def fresh(out: Path) -> None:
    """Start over: remove what choose wrote in ``out`` (its stages' outputs and choose.json), nothing else."""
    drop(out, {}, OUTPUTS)
    (out / STATE).unlink(missing_ok=True)


def examples_digest(examples: list[Example]) -> str:
    return digest([e.messages or e.text for e in examples])


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out`` for one run; a second run into it stops at once with one line naming the holder."""
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, wait=False) as got:
        if not got:
            raise StorageError(f"{out}: in use by {holder(out / LOCK_FILE)} (another `ragtune choose` into this "
                               "--out); wait for it to finish or stop it, or choose another --out")
        yield
