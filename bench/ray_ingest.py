"""Ingestion on a local Ray instance (2 CPUs) vs single-process ingestion: wall time and equality.

    flock /tmp/ragtune-bench.lock python bench/ray_ingest.py [--dataset squad-v1.1-dev] [--cpus 2]

The dataset's paragraphs are written as one text file each into a temporary folder, then ingested
twice from scratch (empty knowledge bases, empty embedding caches): by ``KnowledgeBase.add`` and by
``ragtune.index.ray_ingest.add_with_ray`` on a local Ray instance started with ``--cpus`` CPUs inside
a loopback-only network namespace (the script re-runs itself under ``unshare -n``). Ray's start-up
is timed apart. Equality: the same report, the same chunk ids / sources / texts / positions, the same
manifest, and vectors equal to float32 rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _netns import main_in_namespace  # noqa: E402
from _report import append_section  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_files(dataset: str, folder: Path) -> int:
    n = 0
    for a, line in enumerate((DATA / dataset / "articles.jsonl").read_text().splitlines()):
        for p, paragraph in enumerate(json.loads(line)["paragraphs"]):
            (folder / f"{a:03d}-{p:03d}.txt").write_text(paragraph + "\n", encoding="utf-8")
            n += 1
    return n


def state(kb):
    chunks = kb.store.chunks()
    vectors = kb.store.cached_vectors([c.metadata["text_hash"] for c in chunks])
    return ([(c.id, c.source, c.text, c.position) for c in chunks],
            [(s.source, s.sha256, s.chunks) for s in kb.sources()],
            np.stack([vectors[c.metadata["text_hash"]] for c in chunks]))


def run(args) -> None:
    import ray

    from ragtune.config import load_settings
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.index.ray_ingest import add_with_ray

    settings = load_settings(None)
    with tempfile.TemporaryDirectory(prefix="ragtune-ray-bench-") as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        files = write_files(args.dataset, docs)
        local = KnowledgeBase(Path(tmp) / "local", settings=settings)
        start = time.perf_counter()
        expected = local.add([docs], progress=False)
        single_s = time.perf_counter() - start
        print(f"single process: {files} files, {len(local)} chunks, {single_s:.1f} s", flush=True)
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - start
        remote = KnowledgeBase(Path(tmp) / "ray", settings=settings)
        start = time.perf_counter()
        got = add_with_ray(remote, [docs], progress=False)
        ray_s = time.perf_counter() - start
        ray.shutdown()
        print(f"ray: start {ray_start_s:.1f} s, ingest {ray_s:.1f} s", flush=True)
        (ids_l, man_l, vec_l), (ids_r, man_r, vec_r) = state(local), state(remote)
        same_report = got.to_json() == expected.to_json() and got.embedded == expected.embedded
        max_diff = float(np.abs(vec_l - vec_r).max()) if len(vec_l) == len(vec_r) else float("inf")
        same = same_report and ids_l == ids_r and man_l == man_r and max_diff < 1e-4
    print(f"equal: {same} (report {same_report}, chunks {ids_l == ids_r}, manifest {man_l == man_r}, "
          f"max vector difference {max_diff:.1e})", flush=True)
    text = (f"{args.dataset}: {files} paragraphs written as text files → {len(ids_l)} chunks, embedded with "
            f"all-MiniLM-L6-v2 from an empty cache. Ray: a local instance with {args.cpus} CPUs in a loopback-only "
            "network namespace, one embedding actor per CPU. Other agents were running on the machine.\n\n"
            "| ingestion | wall time s | chunks/s |\n|---|---|---|\n"
            f"| single process (`ragtune ingest`) | {single_s:.1f} | {len(ids_l) / single_s:.1f} |\n"
            f"| Ray, {args.cpus} CPUs (`--ray`), excluding Ray start ({ray_start_s:.1f} s) | {ray_s:.1f} | "
            f"{len(ids_r) / ray_s:.1f} |\n\n"
            f"Ratio single / Ray: **{single_s / ray_s:.2f}×**. Equal to single-process ingestion: "
            f"**{'yes' if same else 'NO'}** — report (added/updated/unchanged/failed, embedded count) "
            f"{'identical' if same_report else 'DIFFERENT'}, chunk ids/sources/texts/positions "
            f"{'identical' if ids_l == ids_r else 'DIFFERENT'}, manifest {'identical' if man_l == man_r else 'DIFFERENT'}, "
            f"largest vector difference {max_diff:.1e}.")
    if args.no_report:
        print(text)
    else:
        append_section("Ray ingestion vs single process", text, command=args.command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="squad-v1.1-dev")
    parser.add_argument("--cpus", type=int, default=2)
    main_in_namespace(parser, run)


if __name__ == "__main__":
    main()
