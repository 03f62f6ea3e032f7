"""`ragtune serve` as a user runs it: a real process, JSON logs, and SIGTERM that finishes queued ingestion."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx

from _serve_util import make_kb, make_settings, wait_for_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_process_finishes_queued_ingestion_on_sigterm(tmp_path, tiny_embedder_dir, tiny_lm_dir):
    settings = make_settings(tiny_embedder_dir)
    make_kb(tmp_path / "kb", settings)
    (tmp_path / "kb" / "ragtune.toml").write_text(f'[embedder]\nmodel = "{tiny_embedder_dir}"\n')
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGTUNE_SERVE__RATE_LIMIT_PER_MINUTE": "0"}
    env.pop("RAGTUNE_API_KEY", None)
    cmd = [sys.executable, "-m", "ragtune.cli.main", "serve", "--kb", str(tmp_path / "kb"), "--model",
           str(tiny_lm_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_server(proc, url, 120)
        assert httpx.get(url + "/healthz").json()["configurations"] == ["base", "rag"]
        files = [("file", (f"part{i}.txt", (f"The Hollin gauge reads {i} units. " * 400).encode(), "text/plain"))
                 for i in range(6)]
        r = httpx.post(url + "/v1/kb/documents", files=files, timeout=30)
        assert r.status_code == 202
        proc.send_signal(signal.SIGTERM)  # while most of the six jobs are still queued
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status says "terminated by SIGTERM".
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [e["message"] for e in logs]
    assert "ingestion worker stopped" in messages
    assert sum(m == "ingestion finished" for m in messages) == 6

    from ragtune.index.knowledge_base import KnowledgeBase

    names = {s.source for s in KnowledgeBase(tmp_path / "kb", settings).sources()}
    assert {f"uploads/part{i}.txt" for i in range(6)} <= names
