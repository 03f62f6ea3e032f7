"""Shared pieces of the serve tests: a small knowledge base, a citing generator, a live server on loopback."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path

import pytest

from ragtune.models.base import Generator

DOCS = {
    "zorblax.md": "# Zorblax 3000\n\nThe Zorblax 3000 kettle boils water in 42 seconds. "
                  "Its warranty lasts seven years when registered at the Quillon office.\n",
    "quillon.txt": "Quillon Appliances was founded in Tarvik in 2011 by Mira Osgood. "
                   "The company repairs every Zorblax kettle for free during the warranty.\n",
    "grelt.md": "# Grelt toaster\n\nThe Grelt toaster has nine browning levels and a bagel mode. "
                "Crumbs are emptied through a drawer at the back.\n",
}


class CitingGenerator(Generator):
    """A deterministic Generator (the real base class): repeats the first sentence of passage [1] and cites it.

    Random tiny models never write "[1]"; this one does, so citation handling is tested end to end
    through the real RAG prompt → answer → citation mapping.
    """

    name = "citing"

    def __call__(self, messages, *, max_new_tokens=None, temperature=None) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature))

    def stream(self, messages, *, max_new_tokens=None, temperature=None) -> Iterator[str]:
        passage = re.search(r"\[1\]\s*(?:\(source: [^)]*\)\s*)?(.*?)(?:\n\n\[2\]|\n\nQuestion:|$)",
                            messages[-1]["content"], re.S)
        sentence = re.search(r"[A-Z][^.!?\n]*[.!?]", passage.group(1)) if passage else None
        answer = f"{sentence.group(0)} [1]" if sentence else "There are no passages to cite."
        words = answer.split(" ")
        for i, word in enumerate(words[: max_new_tokens or None]):
            yield word if i == 0 else " " + word


def make_settings(tiny_embedder_dir: Path, **serve):
    from ragtune.config import Settings

    settings = Settings()
    settings.embedder.model = str(tiny_embedder_dir)
    settings.rag.min_relevance = -1.0  # a random embedder's similarities say nothing; always answer
    settings.serve.rate_limit_per_minute = 0
    for key, value in serve.items():
        setattr(settings.serve, key, value)
    return settings


def make_kb(folder: Path, settings, docs: dict[str, str] = DOCS):
    from ragtune.index.knowledge_base import KnowledgeBase

    src = folder.parent / (folder.name + "-docs")
    src.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (src / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase(folder, settings)
    with chdir(src.parent):  # sources are named as given: "kb-docs/zorblax.md", not an absolute path
        report = kb.add([src.name], progress=False)
    assert not report.failed, report.to_json()
    return kb


@contextmanager
def live_server(app, timeout: float = 60.0) -> Iterator[str]:
    """Run the app with uvicorn on 127.0.0.1 and a free port in a thread; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def wait_for_jobs(client, job_ids: list[str], timeout: float = 60.0, headers=None) -> list[dict]:
    """Poll the jobs endpoint until these jobs finish (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [client.get(f"/v1/kb/jobs/{j}", headers=headers).json() for j in job_ids]
        if all(j["status"] in ("done", "failed") for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            pytest.fail(f"ingestion did not finish: {jobs}")
        time.sleep(0.1)


def wait_for_server(proc, url: str, timeout: float = 180.0) -> None:
    """Until a server process answers /healthz (bounded); its stderr when it died first."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.3)
