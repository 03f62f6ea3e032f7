"""Run every contestant that can be built — base, rag, finetuned, finetuned+rag, raft — on the same questions.

    import ragtune
    results = ragtune.evaluate("../shared/data/squad-mini", kb="kb", model="smollm2",
                               finetuned="runs/squad-lora", out="report", limit=100)
    results["variants"]["rag"]["f1"]

Split as a recipe: `setup` (questions, settings, knowledge base, contestants), `run_variant` (ask, score, summarise
one contestant), `compare`, then the caller's ``annotate`` hook, `finish` (write results.json and the report). Answers are appended to
``out/predictions.jsonl`` as they come, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ragtune import metrics as M
from ragtune.config import Settings, load_settings
from ragtune.errors import InputError
from ragtune.evaluate.gold import check_gold
from ragtune.evaluate.qa import QAItem, QASet, load_qa, split_ids
from ragtune.evaluate.resources import max_rss_mb, measure
from ragtune.evaluate.run import EvalRun, RagFactory
from ragtune.evaluate.scoring import by_group, generalisation, headline_key, reach, score, summarise
from ragtune.evaluate.store import PredictionLog, answer_setup, write_json
from ragtune.evaluate.variants import VARIANTS, Answerer, default_rag, model_name
from ragtune.finetune.report import training_cost
from ragtune.index.stores import is_url
from ragtune.parallel import iter_answers
from ragtune.types import Answer

KBFactory = Callable[[Any, Settings, Any], Any]  # (folder or URL, settings, embedder or None) -> KnowledgeBase


def open_knowledge_base(path: Path | str, settings: Settings, embedder: Any = None) -> Any:
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
    out["gold_sources_not_indexed"] = unindexed_gold(gold, kb)
    return out, ranked


def unindexed_gold(items: list[QAItem], kb: Any) -> int | None:
    """How many questions name gold sources none of which is in the knowledge base (recall counts them as
    misses; a typo, or documents not ingested); None when the retriever cannot list its sources."""
    if not callable(getattr(kb, "sources", None)):
        return None
    by_name: dict[str, list[str]] = {}  # a suffix match ends with the same file name: compare only those
    for info in kb.sources():
        by_name.setdefault(info.source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1], []).append(info.source)
    return sum(not any(M.is_gold(name, it.gold_sources) for g in it.gold_sources
                       for name in by_name.get(g.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1], []))
               for it in items)


def setup(qa: str | Path | QASet, kb: Any, models: dict[str, Any], out: Path, settings: Settings, *,
          variants: list[str] | None, limit: int | None, seed: int, split: str | None, train_qa: str | Path | None,
          rag_factory: RagFactory, kb_factory: KBFactory, judge: Any, strict: bool = False) -> EvalRun:
    """Load the questions (bad lines left out and named, `check_gold`), index the QA set's documents, and pick
    the contestants that can be built."""
    out.mkdir(parents=True, exist_ok=True)
    # before any model runs: every gold answer must score 1 against itself; bad lines are skipped and named
    qa_set = check_gold(qa if isinstance(qa, QASet) else load_qa(qa), strict=strict)
    seen = split_ids(qa_set, train_qa) if train_qa else {it.id for it in qa_set.items
                                                          if it.metadata.get("split") == "train"}
    qa_set = qa_set.split(split).subset(limit, seed)
    trained = models.get("finetuned") is not None or models.get("raft") is not None
    seen = seen & {it.id for it in qa_set.items} if trained else set()
    unknown = set(variants or []) - set(VARIANTS)
    if unknown:
        raise InputError(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    kb_obj = open_kb(kb, qa_set, out, settings, kb_factory)
    wanted = [v for v in (variants or list(VARIANTS))
              if (kb_obj is not None or not VARIANTS[v].retrieval) and models.get(VARIANTS[v].model) is not None]
    if not wanted:
        raise InputError("no variant can be built: give --kb (or a QA folder with documents) and/or --finetuned")
    return EvalRun(qa_set, settings, out, models, kb_obj, wanted, seen, PredictionLog(out / "predictions.jsonl"),
                   seed, judge, rag_factory)


def timed_answer(answerer: Answerer, item: QAItem) -> tuple[QAItem, Answer, float]:
    t0 = time.perf_counter()
    answer = answerer.ask(item.question)
    return item, answer, time.perf_counter() - t0


def record(run: EvalRun, variant: str, item: QAItem, answer: Answer, latency: float, setup_hash: str) -> dict:
    """Score one answer and log the record (so an interrupted run resumes after it)."""
    passages = [h.text for h in answer.hits]
    rec = {"variant": variant, "model": model_name(run.models[VARIANTS[variant].model]), "setup": setup_hash,
           "id": item.id, "question": item.question, "answers": item.answers, "is_impossible": item.is_impossible,
           "gold_sources": item.gold_sources[:5], "prediction": answer.text, "latency_s": latency,
           "seen": (item.id in run.seen) if run.seen else None, "synthetic": bool(item.metadata.get("synthetic")),
           "scores": {**score(item, answer.text, answer.abstained, passages, run.qa.metric, judge=run.judge),
                      "self_cited": self_cited(answer, item)},
           "hits": [{"source": h.source, "text": h.text, "score": float(h.score)} for h in answer.hits]}
    run.log.append(rec)
    return rec


def self_cited(answer: Answer, item: QAItem) -> float:
    """1 when the model itself wrote a [n] naming a passage that holds the answer (`holds_gold`); citations
    ragtune inferred from shared words do not count."""
    return float(any(not c.inferred and M.holds_gold(c.source, c.text, item.gold_sources, item.answers)
                     for c in answer.citations))


def run_variant(run: EvalRun, variant: str) -> dict[str, Any]:
    """Ask every question not already answered under the same setup; the variant's summary."""
    model = run.models[VARIANTS[variant].model]
    name = model_name(model)
    setup_hash = answer_setup(run.settings, VARIANTS[variant].retrieval, run.qa.system, model)
    records, todo = [], []
    for item in run.qa.items:
        done = run.log.get(variant, name, item, setup_hash)
        (records.append(done) if done else todo.append(item))
    if todo:
        run.keep_only(VARIANTS[variant].model)  # an earlier contestant's model is freed before this one is measured
    with measure() as usage:
        if todo:
            answerer = run.answerer(variant)
            g = run.settings.generator  # endpoints answer several questions at once; local models one at a time
            in_flight = g.concurrency if g.backend == "openai" else 1
            answers = iter_answers(lambda it: timed_answer(answerer, it), todo, in_flight)  # in question order
            for item, answer, latency in _progress(answers, variant, len(todo)):
                records.append(record(run, variant, item, answer, latency, setup_hash))
    summary = summarise(records, run.qa.metric, seed=run.seed)
    # a resumed variant keeps the peak memory and time measured when its answers were made
    stored = run.log.usage(variant, name)
    summary["peak_rss_mb"] = max(usage["peak_rss_mb"] if todo else 0.0, stored.get("peak_rss_mb") or 0.0) or None
    summary["seconds"] = (usage["seconds"] if todo else 0.0) + stored.get("seconds", 0.0)
    if todo:
        run.log.record_usage(variant, name, summary["peak_rss_mb"], summary["seconds"])
    summary["resumed"] = len(records) - len(todo)
    cited = [r["scores"].get("self_cited") for r in records if r["scores"].get("self_cited") is not None]
    summary["self_cited"] = sum(cited) / len(cited) if cited else None
    if VARIANTS[variant].retrieval:
        summary["reach"] = reach(records)
    groups = by_group(records, run.qa.metric, seed=run.seed)
    if groups:
        summary["groups"] = groups
    if run.seen:
        summary["generalisation"] = generalisation(records, run.qa.metric)
    run.per_variant[variant] = records
    return summary


def header(run: EvalRun, limit: int | None, split: str | None) -> dict[str, Any]:
    """The results.json fields known before any answer: the questions, models and every setting used."""
    s = run.settings
    return {
        "schema": 1, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "qa": {"name": run.qa.name, "n": len(run.qa.items), "metric": run.qa.metric, "limit": limit,
               "seed": run.seed, "split": split,
               "n_seen_in_training": sum(it.id in run.seen for it in run.qa.items) if run.seen else None,
               "metric_reason": run.qa.metric_reason, "skipped": run.qa.skipped,
               # questions synthesised from DOCS (`choose`): all of them (no QA file given) or a top-up
               "synthetic": bool(run.qa.items) and all(it.metadata.get("synthetic") for it in run.qa.items),
               "n_synthetic": sum(bool(it.metadata.get("synthetic")) for it in run.qa.items)},
        "headline": headline_key(run.qa.metric),
        "models": {key: model_name(spec) if spec is not None else None for key, spec in run.models.items()},
        # the three short keys first (stable since schema 1), then every section as the run used it
        "settings": {"k": s.retrieval.k, "retrieval_mode": s.retrieval.mode,
                     "max_new_tokens": s.generator.max_new_tokens, **s.model_dump(mode="json")},
        "variants": {}, "retrieval": None, "training": training_cost(run.models.get("finetuned")),
        "freshness": None,
    }


def evaluate(qa: str | Path | QASet, kb: Any = None, model: Any = None, finetuned: Any = None,
             out: str | Path = "report", *, raft: Any = None, settings: Settings | None = None,
             variants: list[str] | None = None, limit: int | None = None, seed: int = 0, split: str | None = None,
             train_qa: str | Path | None = None, freshness: bool = False, freshness_questions: int = 20,
             freshness_variants: list[str] | None = None, rag_factory: RagFactory = default_rag,
             kb_factory: KBFactory | None = None, judge: Any = None, report: bool = True,
             annotate: Callable[[dict[str, Any]], None] | None = None, strict: bool = False) -> dict:
    """Evaluate the contestants on one QA set; returns the dict written to ``out/results.json``.

    ``raft``: an adapter trained with `ragtune finetune --raft`; ``judge``: an optional Generator (a bigger model
    or endpoint) that also rates each RAG answer's groundedness; ``annotate``: called with the compared results
    before they are written, to add fields of its own (`choose` adds its advice there); ``strict``: refuse a QA
    set with any bad line (else bad lines are skipped and named in ``qa.skipped``, up to 20% of the file).
    """
    settings = settings or load_settings(kb if isinstance(kb, (str, Path)) else None)
    models = {"base": model if model is not None else settings.generator.model, "finetuned": finetuned,
              "raft": raft}
    run = setup(qa, kb, models, Path(out), settings, variants=variants, limit=limit, seed=seed, split=split,
                train_qa=train_qa, rag_factory=rag_factory, kb_factory=kb_factory or open_knowledge_base,
                judge=judge, strict=strict)
    results = header(run, limit, split)
    if run.kb is not None:
        results["retrieval"], run.ranked = retrieval_quality(run.qa, run.kb, settings.retrieval.k)
    for variant in run.wanted:
        results["variants"][variant] = run_variant(run, variant)
    if freshness and run.kb is not None:
        from ragtune.evaluate.freshness import freshness_test

        results["freshness"] = freshness_test(run, [v for v in run.wanted if v in (freshness_variants or run.wanted)],
                                              kb_factory or open_knowledge_base, results["training"],
                                              n_changed=freshness_questions, n_new=max(1, freshness_questions // 4))
    compare(run, results)
    if annotate is not None:
        annotate(results)
    return finish(run, results, report)


def compare(run: EvalRun, results: dict[str, Any]) -> dict[str, Any]:
    """Paired comparisons of the contestants, the best one and those tied with it, into ``results``."""
    results["comparisons"], results["best"], results["tied_with_best"] = _compare(run.per_variant, run.qa.metric,
                                                                                  run.seed)
    results["peak_rss_mb"] = max_rss_mb()
    return results


def finish(run: EvalRun, results: dict[str, Any], report: bool = True) -> dict[str, Any]:
    """Write results.json and the HTML report."""
    write_json(run.out / "results.json", results)
    if report:
        from ragtune.evaluate.report import write_report

        write_report(run.out, results, run.per_variant, run.ranked)
    return results


def _compare(per_variant: dict[str, list[dict]], metric: str, seed: int) -> tuple[list[dict], str | None, list[str]]:
    """Paired bootstrap of every pair on the headline score; the best variant and those tied with it."""
    key = headline_key(metric)
    scores = {v: [r["scores"][key] for r in sorted(rs, key=lambda r: r["id"])] for v, rs in per_variant.items()}
    names = list(scores)
    comps = [{"a": a, "b": b, "metric": key, **M.compare(scores[a], scores[b], seed=seed)}
             for i, a in enumerate(names) for b in names[i + 1:] if len(scores[a]) == len(scores[b]) > 0]
    if not names:
        return comps, None, []
    best = max(names, key=lambda v: sum(scores[v]) / max(len(scores[v]), 1))
    tied = [c["b"] if c["a"] == best else c["a"] for c in comps if best in (c["a"], c["b"]) and c["verdict"] == "tie"]
    return comps, best, tied


def _progress(items: Iterable[Any], label: str, total: int) -> Iterable[Any]:
    from rich.progress import track

    return track(items, total=total, description=f"{label:>14}", transient=False) if total else items
