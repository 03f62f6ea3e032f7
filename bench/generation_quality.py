"""Answer quality and length of the local generation paths: engine, weight precision and stop rules.

    python bench/generation_quality.py [--configs NAME ...] [--reference NAME]

Every configuration answers the same questions through the product (``ragtune.evaluate``, RAG variant, greedy,
the default settings otherwise: k = 5 whole passages, max_new_tokens = 256): 48 squad-mini training questions
(21-68 of bench/choose.py's seeded split, as bench/rag_context.py) and 8 questions about the sample knowledge
base (the demo's three with k = 2, as `ragtune demo`, and five more; the k rows do not apply there). Reported
per configuration: F1 and
contains with 95% bootstrap intervals, the paired difference to the reference (transformers fp32 with the same
stop rule), the share of answers that repeat a 6-word phrase, reply length in tokens and the mean latency.
Answers are kept in runs/generation_quality/<set>/<config>/predictions.jsonl, so a re-run only asks what is new.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from choose import REPO, squad_split  # noqa: E402
from ragtune import metrics as M  # noqa: E402
from ragtune.config import load_settings  # noqa: E402
from ragtune.evaluate.qa import QAItem, QASet  # noqa: E402

RUNS = REPO / "runs" / "generation_quality"
# name -> settings that differ from the defaults (a bare name is a generator setting); the default stop rule is
# repeat_ngram = 6, no stop texts
CONFIGS = {
    "transformers fp32 (reference)": {"backend": "transformers"},
    "onnxruntime-genai fp32 (default)": {"backend": "onnxruntime-genai", "precision": "fp32"},
    "onnxruntime-genai int8": {"backend": "onnxruntime-genai", "precision": "int8"},
    "onnxruntime-genai int4": {"backend": "onnxruntime-genai", "precision": "int4"},
    # the stop rules, on the default engine
    "int8, no stop rule": {"backend": "onnxruntime-genai", "precision": "int8", "repeat_ngram": 0, "stop": []},
    "int8, repeated 4-gram": {"backend": "onnxruntime-genai", "precision": "int8", "repeat_ngram": 4, "stop": []},
    "int8, repeated 8-gram": {"backend": "onnxruntime-genai", "precision": "int8", "repeat_ngram": 8, "stop": []},
    "int8, blank line only": {"backend": "onnxruntime-genai", "precision": "int8", "repeat_ngram": 0,
                              "stop": ["\n\n"]},
    "int8, repeated 6-gram + blank line": {"backend": "onnxruntime-genai", "precision": "int8", "stop": ["\n\n"]},
    # prompt cost, on the int8 engine: fewer passages, or only the sentences nearest the question
    "int8, k=3": {"precision": "int8", "retrieval.k": 3},
    "int8, k=2": {"precision": "int8", "retrieval.k": 2},
    "int8, k=5, 3 sentences": {"precision": "int8", "rag.context_sentences": 3},
    "int8, k=3, 3 sentences": {"precision": "int8", "retrieval.k": 3, "rag.context_sentences": 3},
}
SAMPLE_QA = [  # the demo's questions first (docs/rag.md gives their answers), then five more from the same files
    ("How long is the warranty on the Quillfeather Q7?", ["30 months"]),
    ("How do I reset the Quillfeather Q7 to factory settings?", ["hold the cap pressed down for 12 seconds"]),
    ("What does firmware 4.2 add to the Quillfeather Q7?", ["a frost alert"]),
    ("Who founded Marrowby Instruments?", ["Ilse Varnholt"]),
    ("How long does the Q7 battery last without sun?", ["about 41 days", "41 days"]),
    ("What is the radio range of the Q7?", ["up to 1.2 km", "1.2 km"]),
    ("How much does the Quillfeather Q7 weigh?", ["96 grams"]),
    ("Can I use the Q7 without the Roost hub?", ["No"]),
]


def question_sets() -> dict[str, tuple[QASet, Path, dict]]:
    from ragtune.cli.ask import DEMO_K, SAMPLE_KB
    from ragtune.index.knowledge_base import KnowledgeBase

    qa, train, _, _ = squad_split()
    squad = QASet("squad-mini", train[20:68], qa.documents)
    sample_kb = RUNS / "sample-kb"
    KnowledgeBase(sample_kb).add([SAMPLE_KB])  # unchanged files are skipped
    sample = QASet("sample-kb", [QAItem(f"s{i}", q, a) for i, (q, a) in enumerate(SAMPLE_QA)])
    return {"squad-mini": (squad, RUNS / "squad-mini-kb", {}),
            "sample-kb": (sample, sample_kb, {"retrieval.k": DEMO_K})}


def run(config: str, qa: QASet, kb: Path, overrides: dict) -> list[dict]:
    """The config's answers, one record per question (asked now or resumed from the log)."""
    from ragtune.evaluate.runner import evaluate

    changes = {(k if "." in k else f"generator.{k}"): v for k, v in CONFIGS[config].items()}
    settings = load_settings(overrides={**overrides, **changes})
    out = RUNS / qa.name / config.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    evaluate(qa, kb=str(kb), out=out, settings=settings, variants=["rag"], report=False)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    last = {r["id"]: r for r in records}  # the latest answer per question
    return [last[it.id] for it in qa.items]


def repeats_a_phrase(text: str, n: int = 6) -> bool:
    words = M.tokens(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def row(config: str, records: list[dict], reference: list[dict] | None, count) -> str:
    f1 = [r["scores"]["f1"] for r in records]
    contains = [r["scores"]["contains"] for r in records]
    cells = [config]
    for name, scores in (("f1", f1), ("contains", contains)):
        lo, hi = M.bootstrap_ci(scores)
        cell = f"{sum(scores) / len(scores):.3f} [{lo:.3f}, {hi:.3f}]"
        if reference is not None and reference is not records:
            d = M.compare(scores, [r["scores"][name] for r in reference])
            cell += f"; Δ {d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] {d['verdict']}"
        cells.append(cell)
    lengths = [count(r["prediction"]) for r in records]
    cells += [f"{sum(repeats_a_phrase(r['prediction']) for r in records) / len(records):.2f}",
              f"{sum(lengths) / len(lengths):.0f}", f"{sum(n >= 250 for n in lengths)}",
              f"{sum(r['latency_s'] for r in records) / len(records):.2f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--reference", default="transformers fp32 (reference)", choices=list(CONFIGS))
    parser.add_argument("--sets", nargs="+", default=["squad-mini", "sample-kb"])
    parser.add_argument("--no-report", action="store_true", help="print the tables, do not append them")
    args = parser.parse_args()
    from ragtune.models.loading import load_tokenizer

    count = load_tokenizer("smollm2")
    count = (lambda text, tok=count: len(tok(text, add_special_tokens=False)["input_ids"]))
    sections = []
    for name, (qa, kb, overrides) in question_sets().items():
        if name not in args.sets:
            continue
        answers = {config: run(config, qa, kb, overrides) for config in args.configs}
        reference = answers.get(args.reference)
        rows = "\n".join(row(c, recs, reference, count) for c, recs in answers.items())
        sections.append(f"**{name}** ({len(qa.items)} questions; Δ = paired difference to the reference, "
                        "95% CI, tie when it contains 0)\n\n"
                        "| configuration | F1 [95% CI] | contains [95% CI] | repeats a 6-word phrase | "
                        "reply tokens (mean) | replies ≥ 250 tokens | latency s (mean) |\n"
                        "|---|---|---|---|---|---|---|\n" + rows)
    body = ("SmolLM2-135M-Instruct, RAG through `ragtune.evaluate`, greedy; the default stop rule: a repeated 6-gram "
            "of new tokens. Other agents shared the CPU, so latencies are indicative.\n\n" + "\n\n".join(sections))
    if args.no_report:
        print(body)
    else:
        append_section("Generation quality: engine, precision and stop rules", body)


if __name__ == "__main__":
    main()
