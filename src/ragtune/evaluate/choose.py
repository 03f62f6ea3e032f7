"""`ragtune choose`: the whole bake-off on the user's own data, as one resumable recipe of existing stages.

    results = Choice(["docs/"], "qa.jsonl", out="choice").run()
    results["advice"]["recommendation"]

index DOCS → check the questions → split them (seeded dev / test) → training data (the user's, the QA set's own
train split, or synthesised from DOCS) → tune k and context compression on the dev part → fine-tune → RAFT →
every contestant on the test part (`evaluate`) → `advise`. Each finished stage is recorded in ``out/choose.json``;
killed and re-run, it resumes: finished stages are skipped, training resumes from its checkpoints and
evaluation from its answer log. The settings chosen are saved to the knowledge base's ragtune.toml, so `ask`,
`eval` and `serve` use them afterwards.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_write_json
from ragtune.config import CONFIG_FILE, FinetuneSettings, Settings, load_settings, save_overrides
from ragtune.errors import InputError
from ragtune.evaluate.metrics import normalize
from ragtune.evaluate.qa import QAItem, QASet, detect_format, load_qa
from ragtune.finetune.data import Example
from ragtune.models.prompts import closed_book_messages

STAGES = ("index", "check", "split", "train_data", "tune", "finetune", "raft", "evaluate")
Say = Callable[[str], None]


@dataclass
class Split:
    dev: list[QAItem]
    test: list[QAItem]
    train: list[QAItem] = field(default_factory=list)  # the QA set's own training split, when it has one


def split_questions(qa: QASet, settings: Settings) -> Split:
    """The QA set's own splits when it declares them (train / validation / test), else a seeded cut of a small
    dev part (for tuning) off the test part (for the verdict). Dev and test never share a question."""
    c = settings.choose
    declared = {it.metadata.get("split") for it in qa.items} - {None}
    if {"test"} <= declared:
        by = {name: [it for it in qa.items if it.metadata.get("split") == name] for name in declared}
        dev = by.get("validation") or by.get("dev") or []
        return Split(dev[:c.dev_max], by["test"][:c.test_max], by.get("train", []))
    items = list(qa.items)
    random.Random(c.seed).shuffle(items)
    n_dev = min(max(round(len(items) * c.dev_fraction), c.dev_min), c.dev_max, len(items) // 3)
    return Split(items[:n_dev], items[n_dev:][:c.test_max])


def answer_cap(items: list[QAItem]) -> int:
    """``generator.max_new_tokens`` from the gold answers' length: room for the longest usual answer and a
    citation, so short answers stop early and long ones are not cut (about 4 characters per token)."""
    lengths = [len(a) // 4 + 1 for it in items for a in it.answers[:1]]
    return max(24, min(256, round(1.5 * _p90(lengths, 64)) + 16))


def reach(predictions: Path) -> float:
    """The share of logged answers whose prompt held a passage with the answer (a gold source, or a passage
    containing a gold answer); an abstained answer had none. Model-free evidence for tuning when the scores
    cannot separate the candidates (a base model that scores 0 on a narrow task everywhere)."""
    from ragtune.evaluate.runner import holds_gold

    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("setup") == rows[-1].get("setup")]  # a log resumed after a settings change
    held = [not r["scores"].get("abstained")
            and any(holds_gold(h["source"], h["text"], r["gold_sources"], r["answers"]) for h in r["hits"])
            for r in rows]
    return sum(held) / len(held) if held else 0.0


def best_trial(trials: list[dict[str, Any]], gate: float) -> dict[str, Any]:
    """The best headline score; on a tie, more answers within reach, then fewer and shorter passages, then the
    configured relevance gate."""
    return max(trials, key=lambda t: (round(t["score"], 6), round(t["reach"], 6), -t["k"],
                                      -(t["context_sentences"] or 99), t["min_relevance"] == gate))


def answer_words(items: list[QAItem]) -> int:
    """The length in words that 90% of the gold answers keep within (their first answer each)."""
    return _p90([len(it.answers[0].split()) for it in items if it.answers], 0)


def shaped(pairs: list[Any], items: list[QAItem], floor: int = 5) -> tuple[list[Any], int]:
    """Synthetic pairs whose answers are no longer than the task's, and the limit: when 90% of the gold answers
    keep within N words, pairs answering in more than max(N, floor) words (a whole sentence where the task wants
    a span) are dropped, unless none would be left. A model trained on sentences answers in sentences, which a
    span metric (token F1) scores low and the answer cap cuts before its citation."""
    limit = max(answer_words(items), floor)
    kept = [p for p in pairs if len(p.answer.split()) <= limit]
    return kept or pairs, limit


def examples_from(items: list[QAItem], instruction: str | None, source: str) -> list[Example]:
    """Closed-book training examples in the exact prompt the fine-tuned model will be asked with."""
    return [Example(messages=closed_book_messages(it.question, instruction)
                    + [{"role": "assistant", "content": it.answers[0]}], source=source, line=i + 1,
                    gold_source=it.gold_sources[0] if it.gold_sources else None)
            for i, it in enumerate(items) if it.answers and not it.is_impossible]


class Choice:
    """One bake-off. Stages are methods; what each produced is kept in ``self.state`` (and ``choose.json``)."""

    def __init__(self, docs: list[str | Path], qa: str | Path, out: str | Path = "choice", *,
                 train: str | Path | None = None, model: str | None = None, metric: str | None = None,
                 constraints: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                 say: Say = print) -> None:
        self.docs, self.qa_path, self.out = [Path(d) for d in docs], Path(qa), Path(out)
        self.train_path = Path(train) if train else None
        self.constraints, self.say = constraints or {}, say
        self.out.mkdir(parents=True, exist_ok=True)
        self.kb_dir = self.out / "kb"
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.settings = load_settings(self.kb_dir, self.overrides)
        self.model = model or self.settings.generator.model
        self.state_path = self.out / "choose.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.qa = load_qa(self.qa_path, metric=metric)  # an unknown metric name stops here, before any work
        self._kb: Any = None

    # -- plumbing ---------------------------------------------------------------------------------------------
    @property
    def kb(self) -> Any:
        if self._kb is None:
            from ragtune.index.knowledge_base import KnowledgeBase

            self._kb = KnowledgeBase(self.kb_dir, settings=self.settings)
        return self._kb

    def _done(self, stage: str, **produced: Any) -> None:
        self.state[stage] = produced
        atomic_write_json(self.state_path, self.state)

    def run(self) -> dict[str, Any]:
        """Every stage not yet done, in order; the results.json of the test run, with the advice in it."""
        for i, stage in enumerate(STAGES, 1):
            if stage in self.state and stage not in ("split", "train_data"):  # these two are cheap and rebuilt
                self.say(f"[{i}/{len(STAGES)}] {stage}: done earlier, skipped")
                continue
            self.say(f"[{i}/{len(STAGES)}] {stage}")
            started = time.perf_counter()
            getattr(self, f"stage_{stage}")()
            self.state[stage]["seconds"] = round(time.perf_counter() - started, 1)
            atomic_write_json(self.state_path, self.state)
        return json.loads((self.out / "results.json").read_text())

    # -- stages -----------------------------------------------------------------------------------------------
    def stage_index(self) -> None:
        """Index DOCS: files and folders, or a QA folder that brings its documents (SQuAD / APIBench style)."""
        files = []
        for doc in self.docs:
            if not doc.exists():
                raise InputError(f"{doc}: not found; DOCS are files or folders of documents, or a QA folder")
            if doc.is_dir() and _is_qa_folder(doc):
                self.kb.add_documents(load_qa(doc).documents)
            else:
                files.append(doc)
        if files:
            report = self.kb.add(files)
            failed = [s for s in report.items if s.status == "failed"]
            for s in failed:
                self.say(f"  not indexed: {s.source} ({s.reason})")
        if len(self.kb) == 0:
            raise InputError(f"{', '.join(map(str, self.docs))}: no text could be indexed; check the documents")
        self._done("index", chunks=len(self.kb))

    def stage_check(self) -> None:
        """Before any model runs: no empty or duplicated question, and every gold answer scores 1 against itself."""
        from ragtune.evaluate.scorers import check_gold

        self.say(f"  metric: {self.qa.metric} ({self.qa.metric_reason})")
        check_gold(self.qa)
        self._done("check", questions=len(self.qa.items), metric=self.qa.metric, why=self.qa.metric_reason)

    def stage_split(self) -> None:
        self.split = split_questions(self.qa, self.settings)
        if not self.split.test:
            raise InputError(f"{self.qa_path}: too few questions to hold some out for testing; give at least 10")
        unused = len(self.qa.items) - len(self.split.dev) - len(self.split.test) - len(self.split.train)
        self._done("split", dev=len(self.split.dev), test=len(self.split.test), seed=self.settings.choose.seed,
                   not_asked=unused)

    def stage_train_data(self) -> None:
        """The user's training set, else the QA set's own train split, else pairs synthesised from DOCS; any
        training question that is also a test question is dropped (no leakage into the verdict)."""
        self.dropped_long = 0
        if self.train_path is not None:
            from ragtune.finetune.data import load_examples

            examples, origin = load_examples(self.train_path), str(self.train_path)
        elif self.split.train:
            examples, origin = examples_from(self.split.train, self.qa.system, "qa train split"), "qa train split"
        else:
            examples, origin = self._synthesise(), "synthetic (extractive, from DOCS)"
        test = {normalize(it.question) for it in self.split.test}
        kept = [e for e in examples if normalize(_question(e)) not in test]
        if not kept:
            raise InputError(f"{origin}: no training example left that is not a test question")
        budget = self.settings.choose.max_train_examples
        sampled = sorted(random.Random(self.settings.choose.seed).sample(range(len(kept)), budget)) \
            if len(kept) > budget else range(len(kept))
        self.train_examples = [kept[i] for i in sampled]
        self._done("train_data", origin=origin, examples=len(self.train_examples), available=len(kept),
                   dropped_as_test_questions=len(examples) - len(kept), synthetic=origin.startswith("synthetic"),
                   dropped_as_longer_than_the_task=self.dropped_long)

    def stage_tune(self) -> None:
        """A small declared search on the dev part: every (k, context_sentences) candidate answers the dev
        questions with RAG; then, at the best of them, the same with the relevance gate off (never abstain).
        The best headline score wins; ties go to the setting that keeps more answers within the prompt's reach
        (`reach`), then to the shorter prompt and the default gate."""
        from ragtune.evaluate.runner import evaluate

        c = self.settings.choose
        cap = answer_cap(self.split.dev + self.split.test) if not _given(self.overrides, "generator.max_new_tokens") \
            else self.settings.generator.max_new_tokens
        dev = QASet(self.qa.name, self.split.dev, [], self.qa.metric, self.qa.system)
        gate = self.settings.rag.min_relevance

        def trial(k: int, sentences: int, min_relevance: float) -> dict[str, Any]:
            settings = self.settings.model_copy(deep=True)
            settings.retrieval.k, settings.rag.context_sentences, settings.generator.max_new_tokens = k, sentences, cap
            settings.rag.min_relevance = min_relevance
            folder = self.out / "tune" / f"k{k}-s{sentences}{'' if min_relevance == gate else '-ungated'}"
            res = evaluate(dev, kb=self.kb, model=self.model, out=folder, settings=settings, variants=["rag"],
                           report=False)
            return {"k": k, "context_sentences": sentences, "min_relevance": min_relevance,
                    "score": res["variants"]["rag"]["score"], "reach": reach(folder / "predictions.jsonl"),
                    "latency_p50": res["variants"]["rag"]["latency_s"]["p50"]}

        ks = [self.settings.retrieval.k] if _given(self.overrides, "retrieval.k") else c.k  # a value set is not tuned
        compress = ([self.settings.rag.context_sentences] if _given(self.overrides, "rag.context_sentences")
                    else c.context_sentences)
        trials = [trial(k, sentences, gate) for k in ks for sentences in compress]
        best = best_trial(trials, gate)
        if not _given(self.overrides, "rag.min_relevance") and gate > 0:
            trials.append(trial(best["k"], best["context_sentences"], 0.0))
            best = best_trial(trials, gate)
        chosen = {"retrieval.k": best["k"], "rag.context_sentences": best["context_sentences"],
                  "rag.min_relevance": best["min_relevance"], "generator.max_new_tokens": cap}
        save_overrides(self.kb_dir / CONFIG_FILE, chosen)
        self._done("tune", trials=trials, chosen=chosen, dev_questions=len(dev.items),
                   why=f"best RAG {dev.metric} on {len(dev.items)} dev questions, ties going to more answers within "
                       "the prompt's reach, then the shorter prompt; answer cap from the gold answers' length "
                       "(1.5 x p90 + 16 tokens)")

    def stage_finetune(self) -> None:
        self._train(self.out / "finetuned", self.train_examples, "finetune", self.settings.finetune)

    def stage_raft(self) -> None:
        from ragtune.finetune.base import load_tokenizer
        from ragtune.finetune.raft import distractor_count, epochs, raft_examples, seq_tokens

        tokenizer = load_tokenizer(self.model)
        settings = self._settings()
        examples, stats = raft_examples(self.train_examples, self.kb, settings,
                                        lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]),
                                        seed=self.settings.finetune.seed)
        finetune = self.settings.finetune.model_copy(update={"epochs": epochs(settings)})
        if not _given(self.overrides, "finetune.max_seq_tokens"):  # the prompts whole, as at answer time
            finetune = finetune.model_copy(update={"max_seq_tokens": seq_tokens(examples, tokenizer,
                                                                                finetune.max_seq_tokens)})
        # from the fine-tuned model, RAFT keeps what it recalls for the prompts whose passages miss the answer
        start = self._model_dir("finetuned") if self.settings.choose.raft_from == "finetuned" else None
        self.say(f"  RAFT data: retrieval brings the answer into the top {settings.retrieval.k} for "
                 f"{stats.retrieved_gold} of {stats.examples} questions, so the gold share is {stats.gold_share:.2f}; "
                 f"{stats.gold_in_prompt} of {stats.examples} prompts hold the gold passage, "
                 f"{distractor_count(settings)} distractors each; up to {finetune.max_seq_tokens} tokens, "
                 f"{finetune.epochs:g} epochs; "
                 f"trained from the {'fine-tuned' if start else 'base'} model")
        self._train(self.out / "raft", examples, "raft", finetune, start=str(start) if start else None,
                    raft=stats.to_json(), max_seq_tokens=finetune.max_seq_tokens, epochs=finetune.epochs,
                    started_from="finetuned" if start else "base")

    def stage_evaluate(self) -> None:
        """Every contestant on the held-out test part, then `advise` on that evidence and the constraints."""
        from ragtune.advise import advise
        from ragtune.evaluate import runner

        test = QASet(self.qa.name, self.split.test, [], self.qa.metric, self.qa.system)
        models = {"base": self.model, "finetuned": self._model_dir("finetuned"), "raft": self._model_dir("raft")}
        run = runner.setup(test, self.kb, models, self.out, self._settings(), variants=None, limit=None,
                           seed=self.settings.choose.seed, split=None, train_qa=None, rag_factory=runner.default_rag,
                           kb_factory=runner.open_knowledge_base, judge=None)
        results = runner.header(run, None, None)
        results["retrieval"], run.ranked = runner.retrieval_quality(test, self.kb, run.settings.retrieval.k)
        for variant in run.wanted:
            self.say(f"  {variant}")
            results["variants"][variant] = runner.run_variant(run, variant)
        runner.compare(run, results)
        rec = advise(self.constraints, results)
        results["choose"] = dict(self.state)
        results["advice"] = rec.to_json()
        atomic_write_json(self.out / "advice.json", rec.to_json())
        runner.finish(run, results)
        from ragtune.winner import write_winner

        write_winner(self.out, recommendation=rec.recommendation, best=results.get("best"),
                     tied=results.get("tied_with_best") or [], base_model=self.model, settings=run.settings,
                     instruction=self.qa.system, kb=self.kb_dir.name)
        self._done("evaluate", best=results.get("best"), recommendation=rec.recommendation,
                   scores={v: s["score"] for v, s in results["variants"].items()})

    # -- helpers ----------------------------------------------------------------------------------------------
    def _settings(self) -> Settings:
        """The settings chosen by tuning (saved in the kb's ragtune.toml), under the user's overrides."""
        return load_settings(self.kb_dir, self.overrides)

    def _model_dir(self, name: str) -> Path | None:
        folder = self.out / name
        return folder if (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file() else None

    def _train(self, folder: Path, examples: list[Example], stage: str, settings: FinetuneSettings,
               start: str | None = None, **extra: Any) -> None:
        from ragtune.finetune.train import FineTuner

        if not (folder / "training_report.json").is_file():
            resume = (folder / "checkpoints").is_dir()
            FineTuner(start or self.model, settings=settings).fit(examples, None, folder, resume=resume)
        report = json.loads((folder / "training_report.json").read_text())
        for warning in report.get("warnings") or []:
            self.say(f"  warning ({stage}): {warning}")
        self._done(stage, folder=str(folder), examples=len(examples), **extra,
                   **{k: report.get(k) for k in ("steps", "stopped_early", "warnings") if k in report})

    def _synthesise(self) -> list[Example]:
        from ragtune.finetune.synth import load_chunks, synthesize

        pairs = synthesize(load_chunks(self.kb_dir), per_chunk=self.settings.choose.synth_per_chunk, progress=False)
        kept, limit = shaped(pairs, self.split.dev or self.split.test)  # the dev answers' shape (test: no dev)
        self.dropped_long = len(pairs) - len(kept)
        if self.dropped_long:
            self.say(f"  {self.dropped_long} of {len(pairs)} synthetic pairs dropped: answers longer than the "
                     f"task's ({limit} words at most)")
        pairs = kept
        items = [QAItem(f"synth-{i}", p.question, [p.answer], [p.source]) for i, p in enumerate(pairs)]
        return examples_from(items, self.qa.system, "synthetic")


def _p90(values: list[int], empty: int) -> int:
    """The value 90% of ``values`` keep within (``empty`` when there are none)."""
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))] if ordered else empty


def _question(example: Example) -> str:
    return next((m["content"] for m in reversed(example.messages[:-1]) if m["role"] == "user"), "")


def _given(overrides: dict[str, Any], key: str) -> bool:
    return overrides.get(key) is not None


def _is_qa_folder(path: Path) -> bool:
    try:
        return detect_format(path) != "jsonl"
    except InputError:
        return False
