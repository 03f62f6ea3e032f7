"""`ragtune choose`: the whole bake-off on the user's own data, as one resumable recipe of existing stages.

    results = Choice("qa.jsonl", out="choice").run(["docs/"])
    results["advice"]["recommendation"]

index DOCS (no QA file: questions synthesised from it, `synth_test`) → check the questions → split them
(seeded dev / test; a small test part topped up with held-out synthetic questions) → training data (the user's,
the QA set's own train split, or synthesised from the chunks no test question came from) → tune k and context compression on the dev part → fine-tune → RAFT →
every contestant on the test part (`evaluate`, once, with `advise` as its ``annotate`` hook). `Choice.run` lists
the stages in order; each is a plain method. The knowledge base, the settings and the data are handed from stage
to stage as objects: the tuned settings go straight to RAFT and evaluation. Each finished stage is recorded in
``out/choose.json``; killed and re-run, it resumes: finished stages are skipped (the tuned values come back from
choose.json), training resumes from its checkpoints and evaluation from its answer log. The settings chosen are
also written to the knowledge base's ragtune.toml, for the user's later `ask`, `eval` and `serve`; choose itself
never reads that file back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragtune.advise import advise
from ragtune.atomic import atomic_write_json
from ragtune.choose.answers import answer_cap, answer_words, shaped
from ragtune.choose.inputs import LABEL, drop, examples_digest, fingerprints, fresh, locked, stale, training_inputs
from ragtune.choose.parts import Split, best_trial, examples_from, split_questions, with_values
from ragtune.choose.synth_test import documents_only_tests, documents_qa, generator_for, reserved, top_up
from ragtune.choose.train import budget, cap_note, capped, load_train, train_or_restart
from ragtune.config import CONFIG_FILE, FinetuneSettings, Settings, load_settings, save_overrides
from ragtune.errors import InputError
from ragtune.evaluate import runner
from ragtune.evaluate.gold import check_gold
from ragtune.evaluate.qa import QAItem, QASet, detect_format, load_qa, skipped_lines
from ragtune.evaluate.resources import release
from ragtune.finetune import report
from ragtune.index.knowledge_base import KnowledgeBase
from ragtune.metrics import normalize
from ragtune.types import Example
from ragtune.winner import write_winner

STAGES = ("index", "check", "split", "train_data", "tune", "finetune", "raft", "evaluate")  # the order of `run`
REBUILT = ("split", "train_data")  # cheap, and later stages need them in memory: rebuilt on every run
Say = Callable[[str], None]


class Choice:
    """One bake-off. `run` calls the stages in order, handing each what the earlier ones made; what each
    produced is recorded in ``self.state`` (and ``choose.json``)."""

    def __init__(self, qa: str | Path | None, out: str | Path = "choice", *,
                 train: str | Path | None = None, model: str | None = None, metric: str | None = None,
                 constraints: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                 say: Say = print, strict: bool = False, fields: dict[str, str] | None = None,
                 train_all: bool = False, fresh: bool = False) -> None:
        self.qa_path = Path(qa) if qa is not None else None  # None: documents only, questions from DOCS
        self.out = Path(out)
        self.train_path = Path(train) if train else None
        self.constraints = constraints or {}
        self.say = say
        self.out.mkdir(parents=True, exist_ok=True)
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        # ragtune.toml of the working folder < RAGTUNE_* < the overrides; the kb's own file is only written
        if train_all:  # every training row, the team's or synthetic: no time budget
            self.overrides.update({"choose.max_train_examples": 0, "choose.max_synthetic_examples": 0})
        self.settings = load_settings(overrides=self.overrides)
        self.fresh = fresh
        self.model = model or self.settings.generator.model
        self.state_path = self.out / "choose.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        # before any work: an unknown metric name stops here; bad lines are left out and named (refused when
        # more than 20% are bad, or any under --strict)
        self.fields = fields  # --question-field / --answer-field, for the QA set and --train alike
        self.metric = metric
        self.qa = (check_gold(load_qa(self.qa_path, metric=metric, fields=fields), strict=strict)
                   if self.qa_path else QASet("synthetic from DOCS", [], metric=metric or "f1"))
        self.reserved: set[str] = set()  # chunks synthetic test questions came from: no training synthesis there
        if self.qa_path is None:
            documents_only_tests(self.settings)  # --synth-test 0 and no QA file: refused before any work
        for line in skipped_lines(self.qa):
            say(line)
        # --train is read and checked here too, before DOCS is indexed; rows lacking the task's instruction get it
        self.train_examples = load_train(self.train_path, fields, self.qa.system) if self.train_path else None
        self.kb_dir = self.out / "kb"
        self.kb = KnowledgeBase(self.kb_dir, settings=self.settings)
        self._started = 0.0

    def run(self, docs: list[str | Path]) -> dict[str, Any]:
        """Every stage in order on DOCS, each handed what the earlier ones made; a stage that choose.json records
        as done is skipped and hands on what it made then. Returns the test run's results, with the advice."""
        with locked(self.out):
            self.refresh([Path(d) for d in docs])
            return self._stages([Path(d) for d in docs])

    def _stages(self, docs: list[Path]) -> dict[str, Any]:
        kb = self.index(docs)
        if self.qa_path is None:  # documents only: dev and test questions synthesised from DOCS
            self.qa = documents_qa(kb, self.settings, self.metric)
        self.check(self.qa)
        parts = self.split(self.qa)
        examples = self.train_data(parts, kb)
        settings = self.tune(parts, kb)
        finetuned = self.finetune(examples)
        raft = self.raft(examples, kb, settings, finetuned)
        return self.evaluate(parts.test, kb, settings, finetuned, raft)

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def inputs(self, docs: list[Path]) -> dict[str, str]:
        """The inputs' fingerprints; the file hashes behind them are kept in ``state["files"]`` (saved by
        `refresh`), so the next run reads only the files whose size or mtime changed."""
        known = self.state.setdefault("files", {})
        return fingerprints(docs, self.qa_path, self.train_path, self.settings, self.model, self.qa.metric,
                            self.constraints, known)

    def refresh(self, docs: list[Path]) -> None:
        """Under the lock: --fresh starts over; else the recorded stages whose inputs changed are dropped, saying
        which input changed and what is redone."""
        if self.fresh:
            fresh(self.out)
            self.state = {}
            self.say(f"--fresh: starting over in {self.out}")
        new = self.inputs(docs)
        changed, redo = stale(self.state.get("inputs", {}), new, self.state, self._training_from())
        if redo:
            self.say(f"{', '.join(LABEL[c] for c in changed)} changed: redoing {', '.join(redo)}")
            # DOCS alone changed: the index is brought up to date in place (unchanged files cost nothing, removed
            # ones are pruned); other indexing settings mean other chunks or vectors, so it is rebuilt
            in_place = "index" in redo and "indexing" not in changed
            drop(self.out, self.state, [s for s in redo if not (in_place and s == "index")])
            if in_place:
                self.state.pop("index")
        if ("index" in redo and "indexing" in changed) or self.fresh:
            self.kb = KnowledgeBase(self.kb_dir, settings=self.settings)
        self.state["inputs"] = new
        atomic_write_json(self.state_path, self.state)

    def synthetic_training(self, parts: Split) -> bool:
        """True when training pairs are synthesised from DOCS: no --train file and no train split in the QA set."""
        return self.train_examples is None and not parts.train

    def _training_from(self) -> set[str]:
        declared = any(it.metadata.get("split") == "train" for it in self.qa.items)
        return training_inputs(self.train_path, declared)

    def begin(self, stage: str) -> bool:
        """Announce a stage; False when choose.json records it done (the stage then hands on what it made).
        Split and training data are cheap and always rebuilt: later stages need them in memory."""
        n = f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}"
        if stage in self.state and stage not in REBUILT:
            self.say(f"{n}: done earlier, skipped")
            return False
        self.say(n)
        self._started = time.perf_counter()
        return True

    def done(self, stage: str, **produced: Any) -> None:
        """Record what a stage produced, and its time, in choose.json."""
        self.state[stage] = {**produced, "seconds": round(time.perf_counter() - self._started, 1)}
        atomic_write_json(self.state_path, self.state)

    # -- stages, in the order `run` calls them ------------------------------------------------------------------
    def index(self, docs: list[Path]) -> KnowledgeBase:
        """Index DOCS: files and folders, or a QA folder that brings its documents (SQuAD / APIBench style)."""
        if not self.begin("index"):
            return self.kb
        files, present = [], set()
        for doc in docs:
            if not doc.exists():
                raise InputError(f"{doc}: not found; DOCS are files or folders of documents, or a QA folder")
            if doc.is_dir() and _is_qa_folder(doc):
                present |= {s.source for s in self.kb.add_documents(load_qa(doc).documents).items}
            else:
                files.append(doc)
        if files:
            added = self.kb.add(files)
            present |= {s.source for s in added.items}
            for s in added.items:
                if s.status == "failed":
                    self.say(f"  not indexed: {s.source} ({s.reason})")
        gone = [s.source for s in self.kb.sources() if s.source not in present]
        for source in gone:  # a re-run after files were removed from DOCS
            self.kb.remove(source)
        if gone:
            self.say(f"  {len(gone)} source(s) no longer in DOCS removed from the index")
        if len(self.kb) == 0:
            raise InputError(f"{', '.join(map(str, docs))}: no text could be indexed; check the documents")
        self.done("index", chunks=len(self.kb), removed=len(gone))
        return self.kb

    def check(self, qa: QASet) -> None:
        """Before any model runs: no empty or duplicated question, and every gold answer scores 1 against itself."""
        if not self.begin("check"):
            return
        self.say(f"  metric: {qa.metric} ({qa.metric_reason})")
        check_gold(qa)  # what __init__ kept passes; a QA set handed in another way is checked here
        self.done("check", questions=len(qa.items), metric=qa.metric, why=qa.metric_reason, skipped=len(qa.skipped))

    def split(self, qa: QASet) -> Split:
        self.begin("split")
        parts = split_questions(qa, self.settings, train_given=self.train_path is not None)
        if not parts.test:
            raise InputError(f"{self.qa_path}: too few questions to hold some out for testing; give at least 10")
        unused = len(qa.items) - len(parts.dev) - len(parts.test) - len(parts.train)
        added = [] if self.qa_path is None else top_up(self.kb, qa.items, parts.test, self.settings, qa.metric,
                                                        max(answer_words(parts.dev or parts.test), 5), self.say)
        parts.test += added
        self.reserved = reserved(qa.items + added)
        self.done("split", dev=len(parts.dev), test=len(parts.test), seed=self.settings.choose.seed,
                  not_asked=unused, synthetic_test=len(added) if self.qa_path else len(parts.test))
        return parts

    def train_data(self, parts: Split, kb: KnowledgeBase) -> list[Example]:
        """The user's training set, else the QA set's own train split, else pairs synthesised from DOCS; any
        training question that is also a test question is dropped (no leakage into the verdict)."""
        self.begin("train_data")
        dropped_long = 0
        synthetic = self.synthetic_training(parts)
        if self.train_examples is not None:
            examples, origin = self.train_examples, str(self.train_path)
        elif parts.train:
            examples, origin = examples_from(parts.train, self.qa.system, "qa train split"), "qa train split"
        else:
            examples, dropped_long = self._synthesise(kb, parts.dev or parts.test)  # the dev answers' shape
            origin = f"synthetic ({self.settings.choose.synth_generator}, from DOCS)"
        test = {normalize(it.question) for it in parts.test}
        kept = [e for e in examples if normalize(_question(e)) not in test]
        if not kept:
            raise InputError(f"{origin}: no training example left that is not a test question")
        cap, setting = budget(self.settings.choose, synthetic)
        chosen = capped(kept, cap, self.settings.choose.seed)
        if note := cap_note(len(chosen), len(kept), setting=setting):
            self.say(f"  {note}")
        data = examples_digest(chosen)
        if self.state.get("train_data", {}).get("digest", data) != data:  # other rows, however they came
            redo = [s for s in ("finetune", "raft", "evaluate") if s in self.state]
            if redo:
                self.say(f"  training data changed: redoing {', '.join(redo)}")
            drop(self.out, self.state, redo)
        self.done("train_data", origin=origin, examples=len(chosen), available=len(kept), digest=data,
                  dropped_as_test_questions=len(examples) - len(kept), synthetic=synthetic,
                  dropped_as_longer_than_the_task=dropped_long)
        return chosen

    def tune(self, parts: Split, kb: KnowledgeBase) -> Settings:
        """A small declared search on the dev part: every (k, context_sentences) candidate answers the dev
        questions with RAG; then, at the best of them, the same with the relevance gate off (never abstain), and
        with each other prompt template (`choose.templates`). The best headline score wins; ties go to the
        setting that keeps more answers within the prompt's reach (`reach`), then to the shorter prompt, the
        default gate and the configured template. Returns the settings with the values chosen."""
        if not self.begin("tune"):
            return with_values(self.settings, self.state["tune"]["chosen"])
        c = self.settings.choose
        cap = self.settings.generator.max_new_tokens
        if not _given(self.overrides, "generator.max_new_tokens"):
            cap = answer_cap(parts.dev + parts.test)
        dev = QASet(self.qa.name, parts.dev, [], self.qa.metric, self.qa.system)
        gate, template = self.settings.rag.min_relevance, self.settings.rag.template
        if not dev.items:  # fewer than 3 questions: nothing to tune on without touching the test part
            self.done("tune", trials=[], chosen={}, dev_questions=0,
                      why="no dev questions to tune on (fewer than 3 questions): the configured settings are used")
            return self.settings

        def trial(k: int, sentences: int, min_relevance: float, prompt: str = template) -> dict[str, Any]:
            values = {"retrieval.k": k, "rag.context_sentences": sentences, "rag.min_relevance": min_relevance,
                      "rag.template": prompt, "generator.max_new_tokens": cap}
            folder = (self.out / "tune" / f"k{k}-s{sentences}{'' if min_relevance == gate else '-ungated'}"
                      f"{'' if prompt == template else '-' + prompt}")
            rag = runner.evaluate(dev, kb=kb, model=self.model, out=folder, variants=["rag"], report=False,
                                  settings=with_values(self.settings, values))["variants"]["rag"]
            return {"k": k, "context_sentences": sentences, "min_relevance": min_relevance, "template": prompt,
                    "score": rag["score"],
                    "reach": rag["reach"], "latency_p50": rag["latency_s"]["p50"]}

        ks = [self.settings.retrieval.k] if _given(self.overrides, "retrieval.k") else c.k  # a value set is not tuned
        compress = ([self.settings.rag.context_sentences] if _given(self.overrides, "rag.context_sentences")
                    else c.context_sentences)
        trials = [trial(k, sentences, gate) for k in ks for sentences in compress]
        best = best_trial(trials, gate, template)
        if not _given(self.overrides, "rag.min_relevance") and gate > 0:
            trials.append(trial(best["k"], best["context_sentences"], 0.0))
            best = best_trial(trials, gate, template)
        others = [] if _given(self.overrides, "rag.template") else [t for t in c.templates if t != template]
        for prompt in dict.fromkeys(others):  # each other template at the best retrieval found
            trials.append(trial(best["k"], best["context_sentences"], best["min_relevance"], prompt))
        best = best_trial(trials, gate, template)
        chosen = {"retrieval.k": best["k"], "rag.context_sentences": best["context_sentences"],
                  "rag.min_relevance": best["min_relevance"], "rag.template": best["template"],
                  "generator.max_new_tokens": cap}
        save_overrides(self.kb_dir / CONFIG_FILE, chosen)  # for the user's later commands; choose never reads it
        self.done("tune", trials=trials, chosen=chosen, dev_questions=len(dev.items),
                  why=f"best RAG {dev.metric} on {len(dev.items)} dev questions, ties going to more answers within "
                      "the prompt's reach, then the shorter prompt; answer cap from the gold answers' length "
                      "(1.5 x p90 + 16 tokens)")
        return with_values(self.settings, chosen)

    def finetune(self, examples: list[Example]) -> Path | None:
        if not self.begin("finetune"):
            return self._model_dir("finetuned")
        return self._train(self.out / "finetuned", examples, "finetune", self.settings.finetune)

    def raft(self, examples: list[Example], kb: KnowledgeBase, settings: Settings,
             finetuned: Path | None) -> Path | None:
        """RAFT examples built with the tuned retrieval (the prompts the model will be shown), then training."""
        if not self.begin("raft"):
            return self._model_dir("raft")
        from ragtune.finetune.base import load_tokenizer
        from ragtune.finetune.raft import distractor_count, epochs, raft_examples, seq_tokens

        tokenizer = load_tokenizer(self.model)
        prompts, stats = raft_examples(examples, kb, settings,
                                       lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]),
                                       seed=self.settings.finetune.seed)
        finetune = self.settings.finetune.model_copy(update={"epochs": epochs(settings)})
        if not _given(self.overrides, "finetune.max_seq_tokens"):  # the prompts whole, as at answer time
            finetune = finetune.model_copy(update={"max_seq_tokens": seq_tokens(prompts, tokenizer,
                                                                                finetune.max_seq_tokens)})
        # from the fine-tuned model, RAFT keeps what it recalls for the prompts whose passages miss the answer
        start = finetuned if self.settings.choose.raft_from == "finetuned" else None
        self.say(f"  RAFT data: retrieval brings the answer into the top {settings.retrieval.k} for "
                 f"{stats.retrieved_gold} of {stats.examples} questions, so the gold share is {stats.gold_share:.2f}; "
                 f"{stats.gold_in_prompt} of {stats.examples} prompts hold the gold passage, "
                 f"{distractor_count(settings)} distractors each; up to {finetune.max_seq_tokens} tokens, "
                 f"{finetune.epochs:g} epochs; "
                 f"trained from the {'fine-tuned' if start else 'base'} model")
        return self._train(self.out / "raft", prompts, "raft", finetune, start=str(start) if start else None,
                           raft=stats.to_json(), max_seq_tokens=finetune.max_seq_tokens, epochs=finetune.epochs,
                           started_from="finetuned" if start else "base")

    def evaluate(self, test: list[QAItem], kb: KnowledgeBase, settings: Settings, finetuned: Path | None,
                 raft: Path | None) -> dict[str, Any]:
        """Every contestant on the held-out test part with the tuned settings, in one `evaluate` whose
        ``annotate`` hook adds `advise`'s verdict on that evidence and the constraints."""
        if not self.begin("evaluate"):
            results = json.loads((self.out / "results.json").read_text())
            if not (self.out / "winner.toml").is_file():  # a bake-off finished before choose recorded winners
                self._record_winner(results, settings)
            return results

        def advised(results: dict[str, Any]) -> None:
            advice = advise(self.constraints, results).to_json()
            results["choose"] = {k: v for k, v in self.state.items() if k != "files"}  # hashes stay in choose.json
            results["advice"] = advice
            atomic_write_json(self.out / "advice.json", advice)

        results = runner.evaluate(replace(self.qa, items=test, documents=[]), kb=kb,  # keeps the skipped lines
                                  model=self.model, finetuned=finetuned, raft=raft, out=self.out, settings=settings,
                                  seed=self.settings.choose.seed, annotate=advised)
        self._record_winner(results, settings)
        self.done("evaluate", best=results.get("best"), recommendation=results["advice"]["recommendation"],
                  scores={v: s["score"] for v, s in results["variants"].items()})
        return results

    # -- helpers ----------------------------------------------------------------------------------------------
    def _record_winner(self, results: dict[str, Any], settings: Settings) -> None:
        """winner.toml: the recommended contestant and how to run it (`ask` / `serve --choice`, `export`)."""
        advice = results["advice"]
        write_winner(self.out, recommendation=advice["recommendation"], best=results.get("best"),
                     tied=advice.get("tied") or results.get("tied_with_best") or [], base_model=self.model,
                     settings=settings, instruction=self.qa.system, kb=self.kb_dir.name)

    def _model_dir(self, name: str) -> Path | None:
        folder = self.out / name
        return folder if (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file() else None

    def _train(self, folder: Path, examples: list[Example], stage: str, settings: FinetuneSettings,
               start: str | None = None, **extra: Any) -> Path:
        trained = report.read_report(folder)
        if trained is None:
            trained = train_or_restart(folder, examples, start or self.model, settings, self.say)
            release()  # the trained model, optimizer and activations: gone before the next stage loads its own
        for warning in trained.get("warnings") or []:
            self.say(f"  warning ({stage}): {warning}")
        self.done(stage, folder=str(folder), examples=len(examples), **extra,
                  **{k: trained.get(k) for k in ("steps", "stopped_early", "warnings") if k in trained})
        return folder

    def _synthesise(self, kb: KnowledgeBase, shape: list[QAItem]) -> tuple[list[Example], int]:
        """Extractive pairs from the knowledge base's chunks, shaped like ``shape``'s answers; the examples and
        how many pairs were dropped as longer than the task's answers."""
        from ragtune.finetune.synth import kb_chunks, training_pairs

        # never from a test question's chunk (self.reserved)
        pairs = training_pairs(kb_chunks(kb), self.reserved, self.settings.choose.synth_generator,
                               generator_for(self.settings), per_chunk=self.settings.choose.synth_per_chunk)
        kept, limit = shaped(pairs, shape)
        if len(kept) < len(pairs):
            self.say(f"  {len(pairs) - len(kept)} of {len(pairs)} synthetic pairs dropped: answers longer than the "
                     f"task's ({limit} words at most)")
        items = [QAItem(f"synth-{i}", p.question, [p.answer], [p.source]) for i, p in enumerate(kept)]
        return examples_from(items, self.qa.system, "synthetic"), len(pairs) - len(kept)


def _question(example: Example) -> str:
    return next((m["content"] for m in reversed(example.messages[:-1]) if m["role"] == "user"), "")


def _given(overrides: dict[str, Any], key: str) -> bool:
    return overrides.get(key) is not None


def _is_qa_folder(path: Path) -> bool:
    try:
        return detect_format(path) != "jsonl"
    except InputError:
        return False
