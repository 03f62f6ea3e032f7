"""Crash consistency: an ingestion killed with SIGKILL mid-way, then re-run, equals a clean run.

The kill lands at an arbitrary point of a commit (small batches make many of them): between the
embedding cache write, the chunk upsert, the stale-chunk delete and the manifest replace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ragtune.config import load_settings
from ragtune.index.embedders import SentenceTransformerEmbedder
from ragtune.index.knowledge_base import KnowledgeBase

# Small batches so the ingestion makes many commits and the kill lands between or inside them.
SCRIPT = """
import sys
import ragtune.index.knowledge_base as kbm
from ragtune.index.embedders import SentenceTransformerEmbedder
kbm.BATCH_CHUNKS = 3
kb = kbm.KnowledgeBase(sys.argv[1], embedder=SentenceTransformerEmbedder(sys.argv[2]))
report = kb.add([sys.argv[3]], progress=False)
"""


N_DOCS = 16


def _write_docs(folder, n=N_DOCS):
    folder.mkdir()
    for i in range(n):
        paras = [f"Document {i} paragraph {j}: the Zephyr unit {i * 7 + j} stores {j} kilowatt hours." for j in range(3)]
        (folder / f"doc{i:02d}.md").write_text("\n\n".join(paras) + "\n")


def _run(args, env):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _manifest_sources(kb_dir) -> int:
    try:
        return len(json.loads((kb_dir / "manifest.json").read_text())["sources"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_mid_ingestion_then_rerun_matches_a_clean_run(tmp_path, tiny_embedder_dir):
    docs, kb_dir, clean_dir = tmp_path / "docs", tmp_path / "kb", tmp_path / "clean"
    _write_docs(docs)
    for folder in (kb_dir, clean_dir):  # small chunks: several per document
        folder.mkdir()
        (folder / "ragtune.toml").write_text("[chunking]\nchunk_tokens = 24\noverlap_tokens = 4\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    args = [str(kb_dir), str(tiny_embedder_dir), str(docs)]

    proc = _run(args, env)
    deadline = time.monotonic() + 300
    while _manifest_sources(kb_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"ingestion ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < _manifest_sources(kb_dir) < N_DOCS  # killed mid-way

    # Re-run (in this process: opening reconciles, add completes what is missing).
    resumed = KnowledgeBase(kb_dir, embedder=SentenceTransformerEmbedder(str(tiny_embedder_dir)))
    assert not resumed.manifest.interrupted
    report = resumed.add([docs], progress=False)
    assert report.ok and 0 < len(report.unchanged) < N_DOCS
    clean = KnowledgeBase(clean_dir, settings=load_settings(clean_dir),
                          embedder=SentenceTransformerEmbedder(str(tiny_embedder_dir)))
    clean.add([docs], progress=False)

    kb = KnowledgeBase(kb_dir, embedder=SentenceTransformerEmbedder(str(tiny_embedder_dir)))
    ids = kb.store.ids()
    assert len(ids) == len(set(ids)) == len(kb) == len(clean) >= 2 * N_DOCS
    assert set(ids) == set(clean.store.ids())
    assert [(s.source, s.sha256, s.chunks) for s in kb.sources()] == \
        [(s.source, s.sha256, s.chunks) for s in clean.sources()]
    assert not kb.manifest.interrupted
