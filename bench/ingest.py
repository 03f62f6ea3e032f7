"""Ingestion throughput and query latency of the default knowledge base.

    python bench/ingest.py [--paragraphs 600] [--queries 200]

Baselines, in the same script on the same chunks, the fp32 model, embedding only (no storage): a plain
sentence-transformers loop, ``model.encode(texts[i:i + 64], batch_size=64)`` over slices of 64 texts, and one
``model.encode(texts)`` call with the library's defaults (batch 32, its own length sorting across all texts:
the stronger of the two).
ragtune's figure is the full path of ``KnowledgeBase.add_documents`` into a fresh folder: chunking,
cache look-ups, embedding (``embedder.precision = "auto"``: bf16 weights on a CPU with bf16
instructions), LanceDB commits, BM25 index update. Then a re-ingestion of the same documents
(incremental: nothing changes, nothing is embedded) and query latency p50/p95 per search mode.
The machine is shared, so the ratio is the figure to read, not the absolute speed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentence_transformers import SentenceTransformer  # noqa: E402

from _report import append_section  # noqa: E402
from ragtune.config import load_settings  # noqa: E402
from ragtune.index.knowledge_base import KnowledgeBase  # noqa: E402
from ragtune.types import Document  # noqa: E402

ROUNDS = 3
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev"


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=600)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()

    docs = []
    for line in (DATA / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        article = json.loads(line)
        docs += [Document(f"{article['title']}#{i}", p) for i, p in enumerate(article["paragraphs"])]
    docs = docs[:args.paragraphs]
    questions = [json.loads(line)["question"] for line in (DATA / "qa.jsonl").read_text().splitlines()]
    questions = random.Random(0).sample(questions, 3 * args.queries + 3)  # distinct per mode: no query-cache hits

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(Path(tmp) / "kb", settings=load_settings(Path(tmp) / "kb"))
        texts = [c.text for d in docs for c in kb.chunker(d)]  # the same chunks the kb will store
        # the baseline: the plain fp32 sentence-transformers model a user would load themselves
        model = SentenceTransformer(str(kb.embedder.folder), device="cpu")
        model.encode(texts[:64], batch_size=64)  # warm-up
        kb.embedder(texts[:64])  # loads ragtune's embedder (bf16 weights where the CPU has bf16) and warms it
        precision = "bf16 weights" if getattr(kb.embedder, "bf16", False) else "fp32"

        # Interleaved in rounds (baseline part, then ragtune part) so load drift on a shared
        # machine hits both sides alike.
        baseline = loop = ours = 0.0
        embedded = 0
        for r in range(ROUNDS):
            part = docs[r::ROUNDS]
            part_texts = [c.text for d in part for c in kb.chunker(d)]
            start = time.perf_counter()
            for i in range(0, len(part_texts), 64):
                model.encode(part_texts[i:i + 64], batch_size=64, normalize_embeddings=True)
            loop += time.perf_counter() - start
            start = time.perf_counter()
            model.encode(part_texts, normalize_embeddings=True)
            baseline += time.perf_counter() - start
            start = time.perf_counter()
            embedded += kb.add_documents(part).embedded
            ours += time.perf_counter() - start
        assert embedded == len(set(texts)), (embedded, len(texts))

        start = time.perf_counter()
        again = kb.add_documents(docs)
        reingest = time.perf_counter() - start
        assert again.embedded == 0

        latency = {}
        for i, mode in enumerate(("hybrid", "dense", "lexical")):
            share = questions[i * (args.queries + 1):(i + 1) * (args.queries + 1)]
            kb.search(share[0], mode=mode)  # warm-up
            full, retrieval = [], []
            for q in share[1:]:
                t = time.perf_counter()
                kb.search(q, k=5, mode=mode)  # embeds the query
                t2 = time.perf_counter()
                kb.search(q, k=5, mode=mode)  # query vector remembered: store search + fusion only
                full.append((t2 - t) * 1000)
                retrieval.append((time.perf_counter() - t2) * 1000)
            latency[mode] = [percentile(full, 0.5), percentile(full, 0.95),
                             percentile(retrieval, 0.5), percentile(retrieval, 0.95)]
        n_chunks, batch = len(kb), kb.settings.embedder.batch_size

    n = len(texts)
    body = (f"{len(docs)} SQuAD v1.1 dev paragraphs → {n} chunks (all-MiniLM-L6-v2, CPU; batch {batch} for "
            "ragtune).\n\n"
            "| ingestion path | time | chunks/s | speed vs the encode loop | speed vs one encode call |\n"
            "|---|---|---|---|---|\n"
            f"| plain sentence-transformers `encode` loop, slices of 64 (baseline, embedding only) | {loop:.1f} s | "
            f"{n / loop:.0f} | 1.00 | {baseline / loop:.2f} |\n"
            f"| one sentence-transformers `encode` call, library defaults (baseline, embedding only) | "
            f"{baseline:.1f} s | {n / baseline:.0f} | {loop / baseline:.2f} | 1.00 |\n"
            f"| `KnowledgeBase.add_documents` (chunk + embed ({precision}) + store + BM25 index) | {ours:.1f} s | "
            f"{n / ours:.0f} | **{loop / ours:.2f}** | **{baseline / ours:.2f}** |\n"
            f"| re-ingestion of the same documents (unchanged: 0 embedded) | {reingest:.2f} s | "
            f"{n / reingest:.0f} | {loop / reingest:.0f} | {baseline / reingest:.0f} |\n\n"
            f"Query latency over {args.queries} SQuAD questions per mode, {n_chunks} chunks stored, k=5; "
            "'with embedding' includes embedding the query, 'retrieval' is the store searches and fusion "
            "(the same query again, its vector remembered):\n\n"
            "| mode | p50 with embedding | p95 with embedding | p50 retrieval | p95 retrieval |\n"
            "|---|---|---|---|---|\n"
            + "\n".join(f"| {m} | {a:.1f} ms | {b:.1f} ms | {c:.1f} ms | {d:.1f} ms |"
                        for m, (a, b, c, d) in latency.items())
            + f"\n\nLoad average (1 min) at start / end: {load[0]:.1f} / {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores, this run included (read the ratios, not the absolute speed).")
    if args.no_report:
        print(body)
    else:
        append_section("Ingestion throughput and query latency", body)


if __name__ == "__main__":
    main()
