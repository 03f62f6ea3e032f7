"""Freshness test: change facts in some documents, add new ones, update a copy of the KB, re-ask those questions.

RAG should follow the new facts at once; a fine-tuned model answers from what it was trained on until it is
retrained. The user's own knowledge base is never touched: the test indexes the QA set's documents into
``out/freshness-kb`` and updates that copy.
"""

from __future__ import annotations

import ast
import random
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ragtune.evaluate.qa import QAItem, QASet
from ragtune.evaluate.scoring import headline_key, score
from ragtune.types import Document

if TYPE_CHECKING:
    from ragtune.evaluate.run import EvalRun

_NAMES = ["Zorvan Pellicott", "Maribel Okonkwo-Strand", "Tessaly Vormund", "Quillon Abernethy", "Idris Falkenrath",
          "Oriane Castellaw", "Bexley Morgenstrau", "Caspian Ildefonse"]
_PROJECTS = ["Halcyon Lattice", "Amber Quarry", "Silent Meridian", "Copper Lantern", "Velvet Horizon",
             "Northern Prism", "Glass Orchard", "Iron Tamarind"]
_TASKS = ["counting penguins in drone photos", "grading the ripeness of mangoes", "spotting cracks in wind turbine blades",
          "tagging bird songs in field recordings", "sorting recycled plastics by type", "reading water meter dials",
          "finding potholes in dashcam video", "classifying coral bleaching in reef photos"]


def _recall(call: str, rename: Any) -> str | None:
    """The call with its first string argument (a model name or URL) renamed, or None when it has none."""
    try:
        tree = ast.parse(call.strip(), mode="eval").body  # the whole answer a call: prose is left to the rules below
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    node = next((n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)), None)
    if not isinstance(tree, ast.Call) or node is None:
        return None
    node.value = rename(node.value)
    return ast.unparse(tree)


def mutate(answer: str, rng: random.Random) -> str:
    """A different value of the same kind: a call's model renamed (an API no model has seen), numbers shifted,
    else a made-up name."""
    renamed = _recall(answer, lambda s: f"{s.rstrip('/')}-ragtune-fresh-{rng.randint(2, 9)}")
    if renamed is not None:
        return renamed
    if re.search(r"\d", answer):
        return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(3, 9)), answer)
    return rng.choice(_NAMES)


def changed_facts(qa: QASet, n: int, seed: int) -> tuple[list[QAItem], list[Document], list[str]]:
    """Up to n answerable questions whose answer appears in their gold document, with the document rewritten."""
    rng = random.Random(seed)
    docs = {d.source: d for d in qa.documents}
    items: list[QAItem] = []
    new_docs: list[Document] = []
    stale: list[str] = []
    used: set[str] = set()
    for item in rng.sample(qa.items, len(qa.items)):
        if len(items) >= n or item.is_impossible or not item.gold_sources:
            continue
        gold = [docs[s] for s in item.gold_sources if s in docs]
        old = next((a for a in item.answers if a and gold and a in gold[0].text), None)
        if old is None or used & set(item.gold_sources):
            continue  # one change per document keeps the questions independent
        used.update(item.gold_sources)
        new = mutate(old, rng)
        # every record of the fact changes (APIBench has several records per model URL)
        new_docs.extend(replace(d, text=d.text.replace(old, new)) for d in gold if old in d.text)
        items.append(replace(item, id=f"{item.id}-changed", answers=[new]))
        stale.append(old)
    return items, new_docs, stale


def new_facts(qa: QASet, n: int) -> tuple[list[QAItem], list[Document]]:
    """n facts no model has seen: made-up projects (knowledge QA), or made-up models loaded the way the QA set's
    first gold call loads one (API QA)."""
    template = next((a for it in qa.items for a in it.answers), "") if qa.metric == "call" else ""
    items, docs = [], []
    for i in range(n):
        source = f"freshness/new-{i}"
        call = _recall(template, lambda s: f"ragtune-fresh/{_TASKS[i % 8].split()[0]}-model-{i}")
        if call is not None:
            text = (f"api_name: ragtune_fresh_{i}\napi_call: {call}\n"
                    f"description: A model released this week for {_TASKS[i % 8]}.")
            question = f"I need a pre-trained model for {_TASKS[i % 8]}. Which one should I load?"
            answer = call
        else:
            project, name, year = _PROJECTS[i % 8], _NAMES[(i + 3) % 8], 2031 + i
            text = (f"Project {project} was announced in {year}. The lead engineer of Project {project} is {name}, "
                    f"who joined the team from the Orbital Survey Office.")
            question, answer = f"Who is the lead engineer of Project {project}?", name
        docs.append(Document(source, text, {"freshness": "new"}))
        items.append(QAItem(f"fresh-{i}", question, [answer], [source]))
    return items, docs


def freshness_test(run: EvalRun, variants: list[str], kb_factory: Any, training: dict | None, n_changed: int = 20,
                   n_new: int = 5) -> dict:
    """Update a copy of the KB, re-ask the affected questions with every variant, and compare with retraining.
    Answers go to the run's log (as variant ``fresh:<name>``) so an interrupted test resumes."""
    from ragtune.evaluate.store import answer_setup
    from ragtune.evaluate.variants import VARIANTS, model_name

    qa, log = run.qa, run.log
    if not qa.documents:
        return {"skipped": "the QA set brings no documents to change; use a SQuAD/APIBench-style folder"}
    changed, changed_docs, stale = changed_facts(qa, n_changed, run.seed)
    added, added_docs = new_facts(qa, n_new)
    local = run.settings.model_copy(update={"store": run.settings.store.model_copy(update={"url": None, "backend": "lancedb"})})
    copy = kb_factory(run.out / "freshness-kb", local, getattr(run.kb, "embedder", None))  # never the team's database
    copy.add_documents(qa.documents)  # incremental: a re-run finds it already indexed
    t0 = time.perf_counter()
    copy.add_documents(changed_docs + added_docs)  # changed text replaces, new sources are added
    update_seconds = time.perf_counter() - t0
    key = headline_key(qa.metric)
    report: dict[str, Any] = {"n_changed": len(changed), "n_new": len(added), "kb_update_seconds": update_seconds,
                              "retrain_seconds": (training or {}).get("seconds"), "variants": {}, "questions": []}
    for variant in variants:
        model, answerer = run.models[VARIANTS[variant].model], None
        name, setup = model_name(model), answer_setup(run.settings, VARIANTS[variant].retrieval, qa.system, model)
        fresh: list[float] = []
        old: list[float] = []
        new: list[float] = []
        for item, old_answer in list(zip(changed, stale)) + [(a, None) for a in added]:
            rec = log.get(f"fresh:{variant}", name, item, setup)
            if rec is None:
                answerer = answerer or run.answerer(variant, retriever=copy)
                answer = answerer.ask(item.question)
                rec = {"variant": f"fresh:{variant}", "model": name, "setup": setup, "id": item.id,
                       "question": item.question,
                       "answers": item.answers, "prediction": answer.text, "abstained": answer.abstained,
                       "passages": [h.text for h in answer.hits]}
                log.append(rec)
            passages = rec["passages"]
            s = score(item, rec["prediction"], rec["abstained"], passages, qa.metric)
            fresh.append(s[key])
            (new if old_answer is None else old).append(s[key])
            stale_s = score(replace(item, answers=[old_answer]), rec["prediction"], rec["abstained"], passages,
                            qa.metric)[key] if old_answer else None
            report["questions"].append({"variant": variant, "id": item.id, "question": item.question,
                                        "new_answer": item.answers[0], "old_answer": old_answer,
                                        "prediction": rec["prediction"], "fresh": s[key], "stale": stale_s})
        stale_scores = [q["stale"] for q in report["questions"] if q["variant"] == variant and q["stale"] is not None]
        report["variants"][variant] = {
            "fresh": sum(fresh) / len(fresh) if fresh else None,
            "changed_fresh": sum(old) / len(old) if old else None,
            "changed_stale": sum(stale_scores) / len(stale_scores) if stale_scores else None,
            "new_facts": sum(new) / len(new) if new else None}
    return report
