"""Ingestion on a Ray cluster: files are read, chunked and embedded as Ray Data tasks; the driver writes.

    ragtune ingest docs/ --kb postgresql://... --ray local      # a local Ray instance on this machine's CPUs
    ragtune ingest docs/ --kb postgresql://... --ray auto       # the cluster this machine belongs to
    ragtune ingest docs/ --kb ... --ray ray://head:10001        # a remote cluster through Ray Client

Unchanged files (same SHA-256 as stored) are skipped before anything is sent. The rest go to a pool
of Ray actors, one per CPU, each of which loads the chunker and the embedder once and handles
batches of files: the same ``prepare_file`` as single-process ingestion, then one embedder call per
batch. The driver then commits through the knowledge base's own ingestion (same batches, journal,
manifest and report), looking the vectors up instead of embedding; so chunk ids, texts, counts and the
added / updated / unchanged / failed report are those of ``KnowledgeBase.add``. A file that fails is
reported with the same reason, never fatal. Ray is imported only here (``pip install 'ragtune[ray]'``).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ragtune.errors import ConfigError
from ragtune.index.ingest import IngestReport, Pending, SourceStatus, file_sha256, prepare_file


class _Worker:
    """A Ray actor: chunker and embedder loaded once, then batches of files → chunks + vectors."""

    def __init__(self, settings_json: str, tags: list[str] | None):
        from ragtune.config import Settings
        from ragtune.documents.chunking import Chunker
        from ragtune.index.embedders import make_embedder

        settings = Settings.model_validate_json(settings_json)
        self.chunker = Chunker.from_settings(settings.chunking)
        self.embedder = make_embedder(settings.embedder)
        self.tags = tags

    def __call__(self, batch: dict) -> dict:
        results: list[Pending | SourceStatus | Exception] = []
        for path, source in zip(batch["path"], batch["source"]):
            try:
                results.append(prepare_file((Path(path), str(source)), None, self.chunker, self.tags))
            except Exception as e:  # reported by the driver exactly as a local failure would be
                results.append(e)
        texts = [c.text for r in results if isinstance(r, Pending) for c in r.chunks]
        vectors = np.asarray(self.embedder(texts), np.float32) if texts else np.zeros((0, 0), np.float32)
        out, start = [], 0
        for r in results:
            n = len(r.chunks) if isinstance(r, Pending) else 0
            out.append(vectors[start:start + n].tobytes())
            start += n
        return {"source": list(batch["source"]), "result": [_dumps(r) for r in results], "vectors": out}


def _dumps(result) -> bytes:
    try:
        return pickle.dumps(result)
    except Exception:  # an exception type that cannot travel: keep its name and message
        return pickle.dumps(RuntimeError(f"{type(result).__name__}: {result}"))


class _Precomputed:
    """An Embedder that answers from the vectors the workers computed (the driver never loads the model)."""

    def __init__(self, vectors: dict[str, np.ndarray], inner):
        self.vectors, self.inner, self.name = vectors, inner, inner.name
        self.dimension = len(next(iter(vectors.values()))) if vectors else inner.dimension

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner(missing)))
        return np.stack([self.vectors[t] for t in texts])


RAY_HINT = ("give 'local', 'auto' (a cluster started on this machine), host:port of a running head node, or "
            "ray://head:10001")


def _check_address(address: str) -> None:
    """A host:port (or ray://host:port) must parse and answer before Ray is asked: Ray itself retries an
    unreachable head for minutes, logging a warning every few seconds."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray {address}: not a cluster address; {RAY_HINT}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(f"--ray {address}: nothing answers there ({e.strerror or type(e).__name__}); start the head "
                          "node (`ray start --head`) or fix the address") from None


def _start(address: str | None) -> None:
    if address:
        _check_address(address)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ warnings would drown the one error line
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray: needs Ray; pip install 'ragtune[ray]'") from None
    if ray.is_initialized():
        return
    logging.getLogger("ray").setLevel(logging.WARNING)  # progress lines would drown the ingestion report
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count(), **kwargs)
    except (ValueError, ConnectionError, RuntimeError, TimeoutError) as e:  # a malformed or unreachable address
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"--ray {address or 'local'}: cannot start or reach the Ray cluster ({first}); "
                          f"{RAY_HINT}") from e
    ray.data.DataContext.get_current().enable_progress_bars = False


def prepare_on_ray(items: list[tuple[Path, str]], settings, tags: list[str] | None,
                   address: str | None) -> tuple[dict, dict[str, np.ndarray]]:
    """Load, chunk and embed files on Ray: ``{source: Pending | exception}`` and ``{chunk text: vector}``."""
    if not items:
        return {}, {}
    _start(address)
    import ray

    workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_batch = max(1, min(settings.embedder.batch_size, -(-len(items) // workers)))
    ds: Any = ray.data.from_items([{"path": str(p), "source": s} for p, s in items])
    ds = ds.map_batches(_Worker, fn_constructor_kwargs={"settings_json": settings.model_dump_json(), "tags": tags},
                        batch_size=per_batch, num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))))
    results: dict[str, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    for row in ds.iter_rows():
        result = pickle.loads(row["result"])
        results[row["source"]] = result
        if isinstance(result, Pending) and result.chunks:
            matrix = np.frombuffer(row["vectors"], np.float32).reshape(len(result.chunks), -1)
            vectors.update(zip((c.text for c in result.chunks), matrix))
    return results, vectors


def add_with_ray(kb, paths: Iterable[str | Path] | str | Path, tags: list[str] | None = None,
                 address: str | None = None, progress: bool | None = None) -> IngestReport:
    """``kb.add(paths, tags)`` with reading, chunking and embedding done on Ray."""
    from ragtune.documents import iter_files

    files = list(iter_files([paths] if isinstance(paths, (str, Path)) else paths))
    kb.manifest.load()
    changed = [(p, s) for p, s in files
               if not (s in kb.manifest.sources and file_sha256(p) == kb.manifest.sources[s].sha256)]
    remote, vectors = prepare_on_ray(changed, kb.settings, tags, address)

    def prepare(item: tuple[Path, str]):
        result = remote.get(item[1])
        if result is None:  # unchanged (or changed since): decided locally, under the write lock
            return prepare_file(item, kb.manifest.sources.get(item[1]), kb.chunker, tags)
        if isinstance(result, BaseException):
            raise result  # the knowledge base's ingestion turns it into a 'failed' entry
        return result

    # The knowledge base's own ingestion loop, with the workers' vectors in place of its embedder.
    inner, kb._embedder = kb._embedder, _Precomputed(vectors, kb._embedder)
    try:
        return kb._ingest(files, lambda item: item[1], prepare, progress)
    finally:
        kb._embedder = inner
