"""Knowledge-base routes: upload documents, watch their ingestion, list and remove sources, search.

Uploads are checked before anything is written: a plain file name (no folders, no ``..``, no absolute
path), an allowed extension, content that matches it, and a size limit. Files are written (atomically)
only into ``<kb>/uploads/`` and ingested by the background worker.
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ragtune.serve.answering import to_plain
from ragtune.serve.errors import APIError
from ragtune.serve.jobs import upload_source
from ragtune.serve.schemas import SearchRequest
from ragtune.serve.state import ServeState

router = APIRouter(prefix="/v1/kb")
MAX_FILES_PER_UPLOAD = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIGNATURES = {".pdf": (b"%PDF-",), ".docx": (b"PK\x03\x04",)}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def kb_state(request: Request) -> ServeState:
    state: ServeState = request.app.state.ragtune
    if state.kb is None or state.uploads_dir is None:
        raise APIError(404, "no knowledge base is served; start the server with --kb DIR", code="kb_not_configured")
    return state


def safe_filename(name: str | None) -> str:
    """The name itself, if it is a plain file name; otherwise a 400 that says why."""
    if not name or not name.strip():
        raise APIError(400, "the uploaded file has no name; send it with a file name", param="file",
                       code="invalid_filename")
    problem = None
    if "/" in name or "\\" in name:
        problem = "contains a folder separator"
    elif name in (".", ".."):
        problem = "is a folder reference"
    elif os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        problem = "is an absolute path"
    elif _CONTROL.search(name):
        problem = "contains control characters"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif len(name.encode("utf-8")) > 200:
        problem = "is longer than 200 bytes"
    if problem:
        raise APIError(400, f"file name {name[:80]!r} {problem}; upload it under a plain name like 'guide.md'",
                       param="file", code="invalid_filename")
    return name


def check_type(name: str, head: bytes, allowed: list[str]) -> None:
    """Extension allowed, and the first bytes look like that kind of file (415 otherwise)."""
    ext = Path(name).suffix.lower()
    if ext not in allowed:
        raise APIError(415, f"{name}: type '{ext or 'none'}' is not accepted; upload one of {', '.join(allowed)}",
                       param="file", code="unsupported_file_type")
    signatures = _SIGNATURES.get(ext)
    if signatures is not None:
        ok = head.startswith(signatures)
    else:  # text formats: binary content (NUL bytes) means the extension lies
        ok = b"\x00" not in head or head.startswith(_UTF16_BOMS)
    if not ok:
        raise APIError(415, f"{name}: the content does not look like a {ext} file; check the file",
                       param="file", code="unsupported_file_type")


@router.post("/documents", status_code=202)
async def upload(request: Request) -> JSONResponse:
    state = kb_state(request)
    form = await request.form(max_files=MAX_FILES_PER_UPLOAD, max_fields=MAX_FILES_PER_UPLOAD)
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise APIError(400, "no file in the request; send multipart/form-data with one or more 'file' parts",
                           param="file", code="missing_file")
        names = [safe_filename(f.filename) for f in files]  # all names checked before anything is written
        limit = state.settings.serve.max_upload_mb * 1024 * 1024
        staged: list[tuple[Path, str]] = []
        try:
            for upload_file, name in zip(files, names):
                staged.append(await _stage(upload_file, name, state, limit))
        except BaseException:  # all or nothing: a refused file drops the ones staged before it
            for temp, _ in staged:
                temp.unlink(missing_ok=True)
            raise
    finally:
        await form.close()
    jobs = []
    for temp, name in staged:
        target = state.served_uploads / name
        os.replace(temp, target)  # atomic: a reader sees the old file or the new, never half of one
        try:
            jobs.append(state.served_ingestor.submit(target, name).to_json())
        except RuntimeError as e:
            raise APIError(503, str(e), code="shutting_down") from None
    return JSONResponse({"object": "list", "data": jobs}, status_code=202)


async def _stage(upload: UploadFile, name: str, state: ServeState, limit: int) -> tuple[Path, str]:
    """Copy one upload to a hidden temp file in uploads/, checking its type and size on the way."""
    uploads = state.served_uploads
    uploads.mkdir(parents=True, exist_ok=True)
    temp = uploads / f".{uuid.uuid4().hex}.part"
    if temp.resolve().parent != uploads.resolve():  # belt and braces: never write outside uploads/
        raise APIError(400, f"{name}: refused", param="file", code="invalid_filename")
    size = 0
    try:
        with temp.open("wb") as out:
            while block := await upload.read(1 << 20):
                if size == 0:
                    check_type(name, block[:8192], state.settings.serve.upload_types)
                size += len(block)
                if size > limit:
                    raise APIError(413, f"{name}: larger than {state.settings.serve.max_upload_mb} MB; split it "
                                        "or raise serve.max_upload_mb", param="file", code="file_too_large")
                out.write(block)
        if size == 0:
            raise APIError(400, f"{name}: the file is empty", param="file", code="empty_file")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, name


@router.get("/jobs")
async def list_jobs(request: Request) -> dict[str, Any]:
    state = kb_state(request)
    return {"object": "list", "data": [j.to_json() for j in state.served_ingestor.jobs()]}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    job = kb_state(request).served_ingestor.get(job_id)
    if job is None:
        raise APIError(404, f"no ingestion job '{job_id}' (jobs are kept while the server runs)",
                       param="job_id", code="job_not_found")
    return job.to_json()


@router.get("/sources")
async def list_sources(request: Request) -> dict[str, Any]:
    state = kb_state(request)
    sources = await run_in_threadpool(_sources, state)
    return {"object": "list", "data": [_source_json(s) for s in sources]}


@router.delete("/sources/{source:path}")
async def remove_source(source: str, request: Request) -> dict[str, Any]:
    state = kb_state(request)

    def remove() -> int | None:
        with state.write_lock:
            if source not in {s.source for s in _sources(state)}:
                return None
            removed = state.served_kb.remove(source)
            name = source.removeprefix("uploads/")
            if source == upload_source(name) and "/" not in name and (state.served_uploads / name).is_file():
                (state.served_uploads / name).unlink()  # or the next start would ingest it again
            return removed

    removed = await run_in_threadpool(remove)
    if removed is None:
        raise APIError(404, f"no source '{source}' in the knowledge base (see GET /v1/kb/sources)",
                       param="source", code="source_not_found")
    return {"object": "kb.source.deleted", "source": source, "deleted": True, "chunks_removed": int(removed)}


@router.post("/search")
async def search(body: SearchRequest, request: Request) -> dict[str, Any]:
    state = kb_state(request)
    hits = await run_in_threadpool(lambda: state.served_kb.search(body.query, k=body.k, where=body.where))
    return {"object": "list", "data": [{"source": h.source, "text": h.text, "score": round(float(h.score), 6),
                                        "metadata": to_plain(h.metadata)} for h in hits]}


def _sources(state: ServeState) -> list[Any]:
    # The ingestion thread may be adding to the manifest while we read it; a retry sees a settled copy.
    for _ in range(5):
        try:
            return list(state.served_kb.sources())
        except RuntimeError:
            continue
    return list(state.served_kb.sources())


def _source_json(info: Any) -> dict[str, Any]:
    """A SourceInfo as JSON, without the server's absolute paths."""
    if isinstance(info, str):
        return {"source": info}
    data = dataclasses.asdict(info) if dataclasses.is_dataclass(info) and not isinstance(info, type) else dict(getattr(info, "__dict__", {}))
    data.pop("path", None)
    return to_plain(data)
