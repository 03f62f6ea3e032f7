"""Background ingestion: one worker thread takes uploaded files in order and adds them to the knowledge base.

Uploads return at once with a job id; ``GET /v1/kb/jobs/{id}`` shows its progress. Writes to the knowledge
base go through one lock (this worker and ``remove`` share it), so the store sees one writer at a time.
Shutdown stops taking new work and waits for the queue to drain; a job cut off by a hard kill is safe
(the store is transactional) and is found again at the next start (see ``Ingestor.resume``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import RagtuneError

log = logging.getLogger("ragtune.serve")
_STOP = object()


@dataclass
class Job:
    """One uploaded file on its way into the knowledge base."""

    id: str
    filename: str
    source: str  # the name it gets in the knowledge base: "uploads/<filename>"
    path: str
    status: str = "queued"  # queued → running → done | failed
    progress: float = 0.0  # 0..1
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    report: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path")  # the server's file layout is not the client's business
        return {"object": "ingestion.job", **data}


class Ingestor:
    """A queue of ingestion jobs and the one thread that works through it."""

    def __init__(self, kb: Any, write_lock: threading.Lock, keep: int = 500):
        self.kb, self.write_lock, self.keep = kb, write_lock, keep
        self._queue: queue.Queue = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="ragtune-ingest", daemon=True)
        self._thread.start()

    def submit(self, path: Path, filename: str) -> Job:
        job = Job(id="job-" + uuid.uuid4().hex[:16], filename=filename, source=upload_source(filename),
                  path=str(path))
        with self._lock:
            if self._closing:
                raise RuntimeError("the server is shutting down; upload again after it restarts")
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:  # bounded memory: forget the oldest finished jobs
                oldest = next(iter(self._jobs.values()))
                if oldest.status in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
            self._queue.put(job)  # under the lock: never behind the stop marker that close() puts
        log.info("ingestion queued", extra={"job": job.id, "file": filename})
        return job

    def resume(self, uploads: Path, known_sources: set[str]) -> list[Job]:
        """Queue uploaded files the knowledge base does not hold yet (a previous run stopped before them)."""
        if not uploads.is_dir():
            return []
        pending = [p for p in sorted(uploads.iterdir())
                   if p.is_file() and not p.name.startswith(".") and upload_source(p.name) not in known_sources]
        return [self.submit(p, p.name) for p in pending]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def counts(self) -> dict[str, int]:
        out = {"queued": 0, "running": 0, "done": 0, "failed": 0}
        for job in self.jobs():
            out[job.status] = out.get(job.status, 0) + 1
        return out

    def close(self, timeout: float) -> bool:
        """Take no new jobs, finish the queued ones; True when all finished within ``timeout`` seconds."""
        with self._lock:
            self._closing = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        finished = not self._thread.is_alive()
        log.info("ingestion worker stopped" if finished else "ingestion still running at shutdown timeout",
                 extra={"jobs": self.counts()})
        return finished

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status, job.started, job.message = "running", time.time(), "reading the file"
        log.info("ingestion started", extra={"job": job.id, "file": job.filename})
        try:
            # Loaded here rather than by kb.add(path) so the source is named "uploads/<file>", not by the
            # absolute path of the server's folder.
            from ragtune.documents import load

            document = load(job.path, job.source)
            job.progress, job.message = 0.3, "embedding and storing"
            with self.write_lock:
                report = self.kb.add_documents([document], progress=False)
            job.report = _report_json(report)
            failed = _failures(job.report)
            job.status = "failed" if failed else "done"
            job.message = failed or "ingested"
        except RagtuneError as e:
            job.status, job.message = "failed", str(e).replace(job.path, job.filename)
            log.warning("ingestion failed", extra={"job": job.id, "file": job.filename, "reason": job.message})
        except Exception as e:  # one bad file must not stop the worker
            job.status, job.message = "failed", f"{type(e).__name__}: {e}"
            log.exception("ingestion failed", extra={"job": job.id, "file": job.filename})
        job.progress, job.finished = 1.0, time.time()
        log.info("ingestion finished", extra={"job": job.id, "file": job.filename, "status": job.status,
                                              "seconds": round(job.finished - (job.started or job.finished), 3)})


def upload_source(filename: str) -> str:
    """The source name of an uploaded file in the knowledge base."""
    return f"uploads/{filename}"


def _report_json(report: Any) -> dict[str, Any]:
    """The knowledge base's IngestReport as JSON: ``{"sources": [{"source", "status", "chunks", "reason"}]}``."""
    if report is None:
        return {}
    data = report.to_json() if hasattr(report, "to_json") else (
        dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else {"summary": str(report)})
    return {"sources": data} if isinstance(data, list) else data


def _failures(report: dict[str, Any]) -> str:
    failed = [s for s in report.get("sources", []) if isinstance(s, dict) and s.get("status") == "failed"]
    return "; ".join(f"{s.get('source')}: {s.get('reason')}" for s in failed)
