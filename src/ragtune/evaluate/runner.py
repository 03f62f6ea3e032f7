"""Run every variant that can be built — base, rag, finetuned, finetuned+rag — on the same questions.

    import ragtune
    results = ragtune.evaluate("../shared/data/squad-mini", kb="kb", model="smollm2",
                               finetuned="runs/squad-lora", out="report", limit=100)
    results["variants"]["rag"]["f1"]

Answers are appended to ``out/predictions.jsonl`` as they come, so an interrupted run resumes where it stopped.
``out/results.json`` and ``out/index.html`` are written at the end (keys documented in docs/evaluate.md).
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from pathlib import Path
from typing import Any, Callable

from ragtune.config import Settings, load_settings
from ragtune.errors import InputError
from ragtune.evaluate import metrics as M
from ragtune.evaluate.qa import QASet, load_qa, split_ids
from ragtune.evaluate.resources import max_rss_mb, measure
from ragtune.evaluate.scoring import HEADLINE, generalisation, score, summarise
from ragtune.evaluate.store import PredictionLog, answer_setup, training_cost, write_json
from ragtune.evaluate.variants import default_rag, load_model, model_name
from ragtune.index.stores import is_url

VARIANTS = ("base", "rag", "finetuned", "finetuned+rag")
RagFactory = Callable[[Any, Any, Settings], Any]  # (kb or None, generator, settings) -> object with .ask(q) -> Answer
KBFactory = Callable[[Path, Settings, Any], Any]  # (folder, settings, embedder or None) -> KnowledgeBase


def open_knowledge_base(path: Path, settings: Settings, embedder: Any = None) -> Any:
    from ragtune.index.knowledge_base import KnowledgeBase

    return KnowledgeBase(path, settings=settings, embedder=embedder)


def open_kb(kb: Any, qa: QASet, out: Path, settings: Settings, kb_factory: KBFactory) -> Any:
    """The knowledge base to retrieve from; a QA set that brings documents is (incrementally) indexed into it."""
    if kb is None and not qa.documents:
        return None
    if kb is None or isinstance(kb, (str, Path)):
        kb = kb_factory(kb if is_url(kb) else Path(kb) if kb is not None else out / "kb", settings, None)
    if qa.documents:
        kb.add_documents(qa.documents)
    return kb


def retrieval_quality(qa: QASet, kb: Any, k: int, depth: int = 10) -> tuple[dict | None, dict[str, list[str]]]:
    """recall@1, recall@k and MRR@depth over the questions with gold sources, plus each question's ranking."""
    ranked: dict[str, list[str]] = {}
    for item in qa.items:
        sources = [h.source for h in kb.search(item.question, k=max(k, depth))]
        ranked[item.id] = list(dict.fromkeys(sources))  # several chunks of one source count once
    gold = [it for it in qa.items if it.gold_sources]
    if not gold:
        return None, ranked
    per = {"recall@1": [M.recall_at_k(ranked[i.id], i.gold_sources, 1) for i in gold],
           f"recall@{k}": [M.recall_at_k(ranked[i.id], i.gold_sources, k) for i in gold],
           f"mrr@{depth}": [M.reciprocal_rank(ranked[i.id], i.gold_sources, depth) for i in gold]}
    out: dict[str, Any] = {name: sum(v) / len(v) for name, v in per.items()}
    out.update(n=len(gold), k=k, ci={name: list(M.bootstrap_ci(v)) for name, v in per.items()})
    out["recall@k"], out["mrr"] = out[f"recall@{k}"], out[f"mrr@{depth}"]
    return out, ranked


def evaluate(qa: str | Path | QASet, kb: Any = None, model: Any = None, finetuned: Any = None,
             out: str | Path = "report", *, settings: Settings | None = None, variants: list[str] | None = None,
             limit: int | None = None, seed: int = 0, split: str | None = None, train_qa: str | Path | None = None,
             freshness: bool = False, freshness_questions: int = 20, freshness_variants: list[str] | None = None,
             rag_factory: RagFactory = default_rag, kb_factory: KBFactory | None = None,
             judge: Any = None, report: bool = True) -> dict:
    """Evaluate the variants on one QA set; returns the dict written to ``out/results.json``.

    ``judge``: an optional Generator (a bigger model or endpoint) that also rates each RAG answer's groundedness.
    """
    settings = settings or load_settings(kb if isinstance(kb, (str, Path)) else None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    qa_set = qa if isinstance(qa, QASet) else load_qa(qa)
    seen = split_ids(qa_set, train_qa) if train_qa else {it.id for it in qa_set.items
                                                          if it.metadata.get("split") == "train"}
    qa_set = qa_set.split(split).subset(limit, seed)
    seen = seen & {it.id for it in qa_set.items} if finetuned is not None else set()
    model = model if model is not None else settings.generator.model
    unknown = set(variants or []) - set(VARIANTS)
    if unknown:
        raise InputError(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    kb_factory = kb_factory or open_knowledge_base
    kb_obj = open_kb(kb, qa_set, out, settings, kb_factory)
    wanted = [v for v in (variants or VARIANTS)
              if (kb_obj is not None or "rag" not in v) and (finetuned is not None or "finetuned" not in v)]
    if not wanted:
        raise InputError("no variant can be built: give --kb (or a QA folder with documents) and/or --finetuned")
    log = PredictionLog(out / "predictions.jsonl")
    results: dict[str, Any] = {
        "schema": 1, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "qa": {"name": qa_set.name, "n": len(qa_set.items), "metric": qa_set.metric, "limit": limit, "seed": seed, "split": split,
               "n_seen_in_training": sum(it.id in seen for it in qa_set.items) if seen else None},
        "headline": HEADLINE[qa_set.metric],
        "models": {"base": model_name(model), "finetuned": model_name(finetuned) if finetuned is not None else None},
        "settings": {"k": settings.retrieval.k, "retrieval_mode": settings.retrieval.mode,
                     "max_new_tokens": settings.generator.max_new_tokens},
        "variants": {}, "retrieval": None, "training": training_cost(finetuned), "freshness": None,
    }
    ranked: dict[str, list[str]] = {}
    if kb_obj is not None:
        results["retrieval"], ranked = retrieval_quality(qa_set, kb_obj, settings.retrieval.k)
    per_variant: dict[str, list[dict]] = {}
    gens: dict[str, Any] = {}
    for variant in wanted:
        which = "finetuned" if variant.startswith("finetuned") else "base"
        spec = finetuned if which == "finetuned" else model
        records, todo = [], []
        setup = answer_setup(settings, variant, qa_set.system)
        for item in qa_set.items:
            done = log.get(variant, model_name(spec), item, setup)
            (records.append(done) if done else todo.append(item))
        with measure() as usage:
            if todo and which not in gens:
                gens.clear()  # one model in memory at a time, so each variant's peak RSS is its own
                gc.collect()
                gens[which] = load_model(spec, settings)
            if todo:
                answerer = rag_factory(kb_obj if "rag" in variant else None, gens[which], settings,
                                       **({"system": qa_set.system} if qa_set.system else {}))
            for item in _progress(todo, variant):
                t0 = time.perf_counter()
                answer = answerer.ask(item.question)
                latency = time.perf_counter() - t0
                passages = [h.text for h in answer.hits]
                rec = {"variant": variant, "model": model_name(spec), "setup": setup, "id": item.id,
                       "question": item.question,
                       "answers": item.answers, "is_impossible": item.is_impossible,
                       "gold_sources": item.gold_sources[:5], "prediction": answer.text, "latency_s": latency,
                       "seen": (item.id in seen) if seen else None,
                       "scores": score(item, answer.text, answer.abstained, passages, qa_set.metric,
                                       judge=judge),
                       "hits": [{"source": h.source, "text": h.text, "score": float(h.score)} for h in answer.hits]}
                log.append(rec)
                records.append(rec)
        summary = summarise(records, qa_set.metric, seed=seed)
        # a resumed variant keeps the peak memory and time measured when its answers were made
        stored = log.usage(variant, model_name(spec))
        summary["peak_rss_mb"] = max(usage["peak_rss_mb"] if todo else 0.0, stored.get("peak_rss_mb") or 0.0) or None
        summary["seconds"] = (usage["seconds"] if todo else 0.0) + stored.get("seconds", 0.0)
        if todo:
            log.record_usage(variant, model_name(spec), summary["peak_rss_mb"], summary["seconds"])
        summary["resumed"] = len(records) - len(todo)
        if seen:
            summary["generalisation"] = generalisation(records, qa_set.metric)
        results["variants"][variant] = summary
        per_variant[variant] = records
    results["comparisons"], results["best"], results["tied_with_best"] = _compare(per_variant, qa_set.metric, seed)
    results["peak_rss_mb"] = max_rss_mb()
    if freshness and kb_obj is not None:
        from ragtune.evaluate.freshness import freshness_test

        results["freshness"] = freshness_test(qa_set, kb_obj, {"base": model, "finetuned": finetuned},
                                              [v for v in wanted if v in (freshness_variants or wanted)],
                                              out, settings, rag_factory, kb_factory, gens, results["training"],
                                              n_changed=freshness_questions, n_new=max(1, freshness_questions // 4),
                                              seed=seed, log=log)
    write_json(out / "results.json", results)
    if report:
        from ragtune.evaluate.report import write_report

        write_report(out, results, per_variant, ranked)
    return results


def _compare(per_variant: dict[str, list[dict]], metric: str, seed: int) -> tuple[list[dict], str | None, list[str]]:
    """Paired bootstrap of every pair on the headline score; the best variant and those tied with it."""
    key = HEADLINE[metric]
    scores = {v: [r["scores"][key] for r in sorted(rs, key=lambda r: r["id"])] for v, rs in per_variant.items()}
    names = list(scores)
    comps = [{"a": a, "b": b, "metric": key, **M.compare(scores[a], scores[b], seed=seed)}
             for i, a in enumerate(names) for b in names[i + 1:] if len(scores[a]) == len(scores[b]) > 0]
    if not names:
        return comps, None, []
    best = max(names, key=lambda v: sum(scores[v]) / max(len(scores[v]), 1))
    tied = [c["b"] if c["a"] == best else c["a"] for c in comps if best in (c["a"], c["b"]) and c["verdict"] == "tie"]
    return comps, best, tied


def _progress(items: list, label: str):
    from rich.progress import track

    return track(items, description=f"{label:>14}", transient=False) if items else items
