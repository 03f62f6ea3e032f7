"""Integration: the packaged all-MiniLM-L6-v2 behind the default settings, on the shipped sample documents."""

from __future__ import annotations

from pathlib import Path

import pytest

import ragtune
from ragtune.config import load_settings

SAMPLE = Path(ragtune.__file__).parent / "sample_kb"


@pytest.mark.integration
def test_default_kb_finds_the_right_sample_file(tmp_path):
    kb = ragtune.KnowledgeBase(tmp_path / "kb", settings=load_settings(tmp_path / "kb", cwd=tmp_path))
    report = kb.add([SAMPLE])
    assert report.ok and len(report.added) == len(list(SAMPLE.iterdir()))
    assert kb.embedder.name == "sentence-transformers:all-MiniLM-L6-v2" and kb.embedder.dimension == 384
    hits = kb.search("How do I reset the sensor to factory settings?", k=3)
    assert hits[0].source.endswith("troubleshooting.md") and "factory" in hits[0].text.lower()
    relevant = hits[0].metadata["dense_score"]
    unrelated = kb.search("recipe for a chocolate cake with strawberries", k=1)[0].metadata["dense_score"]
    assert relevant > unrelated  # what RAG's abstention threshold relies on
    assert kb.add([SAMPLE]).embedded == 0
