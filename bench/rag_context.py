"""Context compression for a small reader: whole passages vs the best N sentences (rag.context_sentences).

    python bench/rag_context.py            # squad-mini training questions 21-68, SmolLM2-135M, k = 3

The questions are squad-mini training questions of bench/choose.py's seeded split (21-68; 1-20 are the
fine-tuning validation set), so the setting is chosen without looking at the held-out questions that
bench/choose.py reports. Each setting answers the same questions with the same model in this process;
"answer kept" is the share of questions whose gold answer is still in the text given to the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from choose import RUNS, squad_split  # noqa: E402
from ragtune import metrics as M  # noqa: E402
from ragtune.config import load_settings  # noqa: E402
from ragtune.evaluate.scoring import strip_citations  # noqa: E402

SETTINGS = (0, 5, 3, 2)  # 0 = whole passages


def main() -> None:
    from rich.progress import track

    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.models.backends import load_generator
    from ragtune.rag import RAG

    qa, train, _, _ = squad_split()
    questions = train[20:68]
    base = load_settings(overrides={"generator.max_new_tokens": 32, "retrieval.k": 3})
    kb = KnowledgeBase(RUNS / "squad-mini" / "kb", settings=base)
    kb.add_documents(qa.documents)  # incremental: nothing to do when bench/choose.py built it
    generator = load_generator(base.generator)
    rows = []
    for n in SETTINGS:
        settings = base.model_copy(update={"rag": base.rag.model_copy(update={"context_sentences": n})})
        rag = RAG(kb, generator, settings)
        f1, contains, kept, tokens = [], [], [], []
        for item in track(questions, description=f"context_sentences={n}"):
            prepared = rag.prepare(item.question)
            text = "" if prepared.abstained else generator(prepared.messages)
            answer = strip_citations(rag.finish(prepared, text).text)
            f1.append(M.f1(answer, item.answers))
            contains.append(M.contains(answer, item.answers))
            kept.append(M.contains(" ".join(h.text for h in prepared.hits), item.answers))
            tokens.append(generator.count_tokens(" ".join(h.text for h in prepared.hits)))
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lo, hi = M.bootstrap_ci(f1)
        rows.append(f"| {n or 'whole passages'} | {mean(f1):.3f} [{lo:.3f}, {hi:.3f}] | {mean(contains):.3f} | "
                    f"{mean(kept):.3f} | {mean(tokens):.0f} |")
    body = (f"{len(questions)} squad-mini training questions (21-68 of bench/choose.py's seeded split), "
            "SmolLM2-135M-Instruct greedy, max_new_tokens 32, hybrid retrieval k=3.\n\n"
            "| rag.context_sentences | F1 [95% CI] | contains | answer kept in context | context tokens |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows))
    append_section("RAG context compression (squad-mini, small reader)", body)


if __name__ == "__main__":
    main()
