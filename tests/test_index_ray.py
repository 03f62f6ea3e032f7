"""Ingestion on Ray (a local 2-CPU instance) gives exactly what single-process ingestion gives.

Ray binds the machine's own address unless it has only loopback, so each test re-runs itself in a
loopback-only network namespace (``unshare -n``, then ``ip link set lo up``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_NAMESPACE = os.environ.get("RAGTUNE_TEST_NETNS") == "1"


def _rerun_in_loopback_namespace(nodeid: str) -> None:
    inner = (f"ip link set lo up && RAGTUNE_TEST_NETNS=1 {sys.executable} -m pytest -q -x -p no:cacheprovider "
             f"'{nodeid}'")
    proc = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, (proc.stdout[-4000:] + proc.stderr[-2000:])
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    long = "\n\n".join(f"Section {i}. The Zephyr inverter model {i} stores {i * 3} kilowatt hours and reports "
                       f"its charge every {i + 2} minutes to the monitoring panel." for i in range(60))
    (folder / "manual.md").write_text("# Manual\n\n" + long + "\n")
    (folder / "cats.txt").write_text("Cats sleep for most of the afternoon and hunt at dusk.\n")
    (folder / "sub" / "warranty.html").write_text("<html><body><h1>Warranty</h1><p>The Zephyr battery warranty "
                                                 "lasts twelve years.</p></body></html>")
    (folder / "empty.txt").write_text("   \n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    return folder


def _state(kb):
    return ([(c.id, c.source, c.text, c.position) for c in kb.store.chunks()],
            [(s.source, s.sha256, s.chunks, s.tags) for s in kb.sources()])


def test_ray_ingestion_equals_single_process_ingestion(request, tmp_path, docs):
    if not IN_NAMESPACE:
        return _rerun_in_loopback_namespace(request.node.nodeid)
    import ray

    from ragtune.config import load_settings
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.index.ray_ingest import add_with_ray

    settings = load_settings(None, {"embedder.model": str(request.getfixturevalue("tiny_embedder_dir"))})
    local = KnowledgeBase(tmp_path / "local", settings=settings)
    remote = KnowledgeBase(tmp_path / "ray", settings=settings)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        expected = local.add([docs], tags=["manual"])
        got = add_with_ray(remote, [docs], tags=["manual"])
        assert got.to_json() == expected.to_json() and got.embedded == expected.embedded
        assert sorted(i.status for i in got) == ["added"] * 3 + ["failed"] * 2
        assert _state(remote) == _state(local)
        assert len(remote) > 5  # the manual was cut into several chunks
        (docs / "cats.txt").write_text("Dogs bark at the postman.\n")  # one changed, the rest unchanged
        expected, got = local.add([docs], tags=["manual"]), add_with_ray(remote, [docs], tags=["manual"])
        assert got.to_json() == expected.to_json() and got.embedded == expected.embedded == 1
        assert _state(remote) == _state(local)
        query = "How long is the battery warranty?"
        assert [h.id for h in remote.search(query)] == [h.id for h in local.search(query)]
    finally:
        ray.shutdown()


def test_cli_ray_option_selects_the_cluster(monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    from ragtune.cli import kb as kb_cli
    from ragtune.index import ray_ingest
    from ragtune.index.ingest import IngestReport

    addresses = []
    monkeypatch.setattr(ray_ingest, "add_with_ray",
                        lambda kb, paths, tags=None, address=None, progress=None: addresses.append(address)
                        or IngestReport())
    app = typer.Typer()
    kb_cli.register(app)
    for value in ("local", "auto", "ray://head:10001"):
        out = CliRunner().invoke(app, ["ingest", str(tmp_path), "--kb", str(tmp_path / "kb"), "--ray", value])
        assert out.exit_code == 0, out.output
    assert addresses == [None, "auto", "ray://head:10001"]
