"""PDF loading: ragtune's PDFium loader against a plain pypdf extraction of the same file, plus chunking speed.

    python bench/documents_pdf.py [PDF]     # default: ../shared/data/real-docs/pdf/HistoryOfAlexnet.pdf
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from ragtune.documents import Chunker, load  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-docs" / "pdf" / "HistoryOfAlexnet.pdf"


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def pypdf_baseline(path: Path) -> str:
    import pypdf

    return "\n\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    base_s, base_text = timed(lambda: pypdf_baseline(path), 1)  # ~20 s: once is enough
    ours_s, doc = timed(lambda: load(path), 3)
    chunker = Chunker(256, 32)
    chunker(doc)  # load the tokenizer outside the timing
    chunk_s, chunks = timed(lambda: chunker(doc), 3)
    body = (
        f"File: `{path.name}`, {doc.metadata['page_count']} pages, {len(doc.text):,} characters extracted "
        f"(pypdf: {len(base_text):,}).\n\n"
        "| step | time (median) | ratio |\n|---|---|---|\n"
        f"| pypdf `extract_text` (baseline) | {base_s:.2f} s | 1.0 |\n"
        f"| ragtune `documents.load` (pypdfium2) | {ours_s:.2f} s | {base_s / ours_s:.1f}x faster |\n"
        f"| `Chunker(256, 32)` on the loaded text: {len(chunks)} chunks | {chunk_s:.2f} s "
        f"({len(chunks) / chunk_s:.0f} chunks/s) | – |\n"
    )
    append_section("Document loading: PDF", body)


if __name__ == "__main__":
    main()
