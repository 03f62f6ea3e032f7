"""The variant runner, report and freshness test on small fakes: an in-memory retriever and scripted generators.

The fakes make every expected score computable by hand: the reader copies the new words of the top passage,
the "fine-tuned" model recalls exactly the questions it was trained on, the base model knows nothing.
"""

import json
import os
import re

import pytest

from ragtune.config import Settings
from ragtune.evaluate.runner import evaluate
from ragtune.models.base import Generator
from ragtune.types import Answer, Hit

FACTS = {  # title → paragraphs; each question's answer is the capitalised word its paragraph adds
    "Freedonia": ["The capital of Freedonia is Zembla.", "The river of Freedonia is Quorra."],
    "Sylvania": ["The capital of Sylvania is Morbek.", "The founder of Sylvania is Tarkin."],
}
QUESTIONS = [("Freedonia", 0, "What is the capital of Freedonia?", "Zembla"),
             ("Freedonia", 1, "What is the river of Freedonia?", "Quorra"),
             ("Sylvania", 0, "What is the capital of Sylvania?", "Morbek"),
             ("Sylvania", 1, "Who is the founder of Sylvania?", "Tarkin")]


def _words(text):
    return set(re.findall(r"\w+", text.lower()))


class MemoryKB:
    """Tiny in-memory retriever: rank documents by shared words with the query."""

    def __init__(self):
        self.docs = {}

    def add_documents(self, docs):
        self.docs.update({d.source: d.text for d in docs})

    def search(self, query, k=5, where=None):
        scored = sorted(self.docs.items(), key=lambda kv: (-len(_words(query) & _words(kv[1])), kv[0]))
        return [Hit(text=t, source=s, score=float(len(_words(query) & _words(t)))) for s, t in scored[:k]]


class Reader(Generator):
    """'Reads' the top passage: answers with the capitalised words it adds to the question; else abstains."""

    name = "reader"

    def __init__(self, memory=None):
        self.memory, self.calls = memory or {}, 0

    def __call__(self, messages, **kw):
        self.calls += 1
        user = messages[-1]["content"]
        question, _, context = user.partition("\n\n")
        if question in self.memory:
            return self.memory[question]
        new = [w for w in re.findall(r"[A-Z]\w+", context) if w.lower() not in _words(question) and w != "The"]
        return " ".join(new) + " [1]" if new else "I don't know."


class FakeRAG:
    def __init__(self, kb, generator, settings):
        self.kb, self.generator = kb, generator

    def ask(self, question):
        hits = self.kb.search(question, k=2) if self.kb else []
        text = self.generator([{"role": "user", "content": question + "\n\n" + (hits[0].text if hits else "")}])
        return Answer(text=text, hits=hits)


@pytest.fixture
def squad_folder(tmp_path):
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "articles.jsonl").write_text("\n".join(json.dumps({"title": t, "paragraphs": p}) for t, p in FACTS.items()))
    (folder / "qa.jsonl").write_text("\n".join(json.dumps(
        {"id": f"q{i}", "title": t, "paragraph_index": p, "question": q, "answers": [a], "is_impossible": False})
        for i, (t, p, q, a) in enumerate(QUESTIONS)))
    train = tmp_path / "train.jsonl"  # the fine-tuned model saw the first two questions
    train.write_text("\n".join(json.dumps({"question": q, "answer": a}) for _, _, q, a in QUESTIONS[:2]))
    return folder, train


def run(folder, train, out, **kw):
    finetuned = Reader(memory={q: a for _, _, q, a in QUESTIONS[:2]})
    finetuned.name = "memoriser"
    base = Reader()
    kw.setdefault("rag_factory", FakeRAG)
    results = evaluate(folder, model=base, finetuned=finetuned, out=out, settings=Settings(), train_qa=train,
                       kb_factory=lambda path, settings, embedder: MemoryKB(), **kw)
    return results, base, finetuned


def test_four_variants_scored_by_hand(squad_folder, tmp_path):
    folder, train = squad_folder
    out = tmp_path / "report"
    results, base, _ = run(folder, train, out, judge=lambda messages, **kw: "yes")
    v = results["variants"]
    assert v["rag"]["judge_grounded"] == 1.0 and "judge_grounded" not in v["base"]  # closed-book: nothing to judge
    assert list(v) == ["base", "rag", "finetuned", "finetuned+rag"]
    assert v["base"]["f1"] == 0.0 and v["base"]["abstention"]["rate"] == 1.0
    assert v["rag"]["f1"] == v["rag"]["em"] == v["rag"]["contains"] == 1.0  # the [1] marker is stripped first
    assert v["rag"]["groundedness"] == 1.0  # every answer word is in the passages
    assert v["base"]["self_cited"] == 0.0
    assert v["finetuned"]["f1"] == 0.5  # recalls the 2 seen questions of 4
    gen = v["finetuned"]["generalisation"]
    assert (gen["seen"]["score"], gen["held_out"]["score"], gen["gap"]) == (1.0, 0.0, 1.0)
    assert results["retrieval"]["recall@1"] == 1.0 and results["retrieval"]["mrr"] == 1.0
    assert results["best"] in ("rag", "finetuned+rag") and results["headline"] == "f1"
    assert all(s["latency_s"]["p50"] >= 0 and s["peak_rss_mb"] > 0 for s in v.values())
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["variants"]["rag"]["ci"]["f1"] == [1.0, 1.0]
    page = (out / "index.html").read_text()
    for heading in ("Quality", "Retrieval", "Latency", "Memory", "Training cost", "Generalisation", "Questions"):
        assert f"<h2>{heading}" in page
    assert page.count("data:image/png;base64") >= 4 and "Zembla" in page
    assert "contains 1, " in page and "contains 0, " in page  # per-answer drill-down: rag right, base abstained


def test_interrupted_run_resumes_without_asking_again(squad_folder, tmp_path):
    folder, train = squad_folder
    out = tmp_path / "report"
    run(folder, train, out)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20])  # cut mid-line
    results, base, finetuned = run(folder, train, out)
    assert base.calls == 0 and finetuned.calls == 3  # only the lost answers are asked again
    assert results["variants"]["finetuned+rag"]["resumed"] == 1
    assert results["variants"]["rag"]["f1"] == 1.0


def test_answers_made_under_other_settings_are_asked_again(squad_folder, tmp_path):
    folder, train = squad_folder
    out = tmp_path / "report"
    run(folder, train, out)
    changed = Settings()
    changed.rag.context_sentences = 1  # shapes RAG answers only: closed-book answers stay valid
    finetuned = Reader(memory={q: a for _, _, q, a in QUESTIONS[:2]})
    finetuned.name = "memoriser"
    base = Reader()
    results = evaluate(folder, model=base, finetuned=finetuned, out=out, settings=changed, train_qa=train,
                       kb_factory=lambda path, settings, embedder: MemoryKB(), rag_factory=FakeRAG)
    assert base.calls == 4 and finetuned.calls == 4  # only the two RAG variants, 4 questions each
    assert results["variants"]["base"]["resumed"] == 4 and results["variants"]["rag"]["resumed"] == 0


def test_weights_retrained_in_the_same_folder_are_a_new_setup(tmp_path):
    """A logged answer belongs to the weights that made it: an adapter retrained into the same folder gets its
    questions asked again; an alias or an endpoint name keeps the hash it had."""
    from ragtune.evaluate.store import answer_setup

    folder = tmp_path / "ft"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"first weights")
    settings = Settings()
    first = answer_setup(settings, True, None, folder)
    assert answer_setup(settings, True, None, str(folder)) == first  # a path given as text: the same weights
    (folder / "adapter_model.safetensors").write_bytes(b"second weight")  # the same size: the time tells
    os.utime(folder / "adapter_model.safetensors", ns=(1, 1))
    assert answer_setup(settings, True, None, folder) != first
    assert answer_setup(settings, True, None, "smollm2") == answer_setup(settings, True)
    raft = tmp_path / "raft"  # an adapter trained on the first: retraining its base is a new setup too
    raft.mkdir()
    (raft / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "../ft"}))
    (raft / "adapter_model.safetensors").write_bytes(b"raft weights")
    on_first = answer_setup(settings, True, None, raft)
    os.utime(folder / "adapter_model.safetensors", ns=(2, 2))
    assert answer_setup(settings, True, None, raft) != on_first
    legacy = tmp_path / "legacy"  # a folder with PyTorch .bin weights only
    legacy.mkdir()
    (legacy / "pytorch_model.bin").write_bytes(b"old format")
    before = answer_setup(settings, True, None, legacy)
    os.utime(legacy / "pytorch_model.bin", ns=(3, 3))
    assert answer_setup(settings, True, None, legacy) != before


def test_freshness_rag_follows_finetuned_stays_stale(squad_folder, tmp_path):
    folder, train = squad_folder
    results, _, _ = run(folder, train, tmp_path / "report", freshness=True)
    f = results["freshness"]
    assert f["n_changed"] == 4 and f["n_new"] == 5 and f["kb_update_seconds"] >= 0
    assert f["variants"]["rag"]["changed_fresh"] == 1.0 and f["variants"]["rag"]["changed_stale"] == 0.0
    # a new fact's passage adds the engineer's two names and "Orbital Survey Office": F1 = 2·(2/5)·1/(2/5+1) = 4/7
    assert f["variants"]["rag"]["new_facts"] == pytest.approx(4 / 7)
    # the memoriser answers the two questions it was trained on with the old fact
    assert f["variants"]["finetuned"]["changed_stale"] == 0.5 and f["variants"]["finetuned"]["new_facts"] == 0.0
    assert "<h2>Freshness" in (tmp_path / "report" / "index.html").read_text()
    again, base, finetuned = run(folder, train, tmp_path / "report", freshness=True)
    assert base.calls == finetuned.calls == 0  # the freshness answers are resumed from the log too
    assert again["freshness"]["variants"] == f["variants"]


def test_variant_selection_and_errors(squad_folder, tmp_path):
    from ragtune.errors import InputError

    folder, train = squad_folder
    results, _, _ = run(folder, train, tmp_path / "r1", variants=["base", "rag"])
    assert list(results["variants"]) == ["base", "rag"]
    with pytest.raises(InputError, match="unknown variant"):
        run(folder, train, tmp_path / "r2", variants=["rag", "magic"])
    qa = tmp_path / "plain.jsonl"
    qa.write_text(json.dumps({"question": "Q?", "answers": ["A"]}))
    with pytest.raises(InputError, match="no variant can be built"):
        evaluate(qa, model=Reader(), out=tmp_path / "r3", settings=Settings(), variants=["rag"], rag_factory=FakeRAG)


def test_self_cited_counts_only_the_models_own_citation_of_a_passage_with_the_answer():
    from ragtune.evaluate.qa import QAItem
    from ragtune.evaluate.runner import self_cited
    from ragtune.types import Citation

    item = QAItem("q", "What is the capital of Freedonia?", ["Zembla"], ["Freedonia#0"])
    right = Citation(1, "Freedonia#0", "The capital of Freedonia is Zembla.")
    holds = Citation(2, "Atlas#3", "Zembla, capital of Freedonia, lies on the coast.")
    wrong = Citation(1, "Sylvania#0", "The capital of Sylvania is Morbek.")
    assert self_cited(Answer("Zembla [1]", [right]), item) == 1.0
    assert self_cited(Answer("Zembla [2]", [holds]), item) == 1.0  # no gold source, but it holds the answer
    assert self_cited(Answer("Zembla [1]", [wrong]), item) == 0.0
    inferred = Citation(1, "Freedonia#0", right.text, inferred=True)
    assert self_cited(Answer("Zembla", [inferred]), item) == 0.0  # ragtune's guess, not the model's


def test_generator_concurrency_reaches_eval_and_keeps_answers_and_order(squad_folder, tmp_path):
    """generator.concurrency: an endpoint answers several questions at once; same answers, same order."""
    import threading
    import time as _time

    class Endpoint(Generator):
        name = "endpoint"

        def __init__(self):
            self.now = self.peak = 0
            self.lock = threading.Lock()

        def stream(self, messages, **kw):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            _time.sleep(0.05)
            with self.lock:
                self.now -= 1
            yield f"answer to {messages[-1]['content']}"

    folder, _ = squad_folder
    runs = {}
    for n in (1, 4):
        settings = Settings()
        settings.generator.backend, settings.generator.concurrency = "openai", n
        gen = Endpoint()
        evaluate(folder, model=gen, out=tmp_path / f"c{n}", settings=settings, variants=["base"],
                 kb_factory=lambda path, s, e: MemoryKB())
        lines = [json.loads(x) for x in (tmp_path / f"c{n}" / "predictions.jsonl").read_text().splitlines()]
        runs[n] = ([(r["id"], r["prediction"]) for r in lines], gen.peak)
    assert runs[1][0] == runs[4][0] and runs[1][1] == 1 and runs[4][1] > 1


class ListedKB(MemoryKB):
    """The in-memory retriever with the knowledge base's `sources()` listing (as DOCS typed: absolute paths)."""

    def sources(self):
        from types import SimpleNamespace

        return [SimpleNamespace(source=s) for s in self.docs]


def test_bad_lines_reach_results_and_report_and_sources_match_by_suffix(tmp_path):
    from ragtune.evaluate.report import unindexed_warning
    from ragtune.types import Document

    kb = ListedKB()
    kb.add_documents([Document(f"/home/team/docs/{t}-{p}.md", text)
                      for t, paras in FACTS.items() for p, text in enumerate(paras)])
    rows = [{"question": q, "answers": [a], "gold_sources": [f"docs/{t}-{p}.md"]} for t, p, q, a in QUESTIONS]
    rows[3]["gold_sources"] = ["docs/missing.md"]  # names no ingested document
    rows += [{"question": f"Padding question {i}?", "answers": ["Zembla"]} for i in range(4)]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(map(json.dumps, rows)) + "\n" + json.dumps({"question": "Blank?", "answers": ["the"]}))
    results = evaluate(qa, kb=kb, model=Reader(), out=tmp_path / "r", settings=Settings(), rag_factory=FakeRAG,
                       variants=["rag"])
    assert results["qa"]["n"] == 8 and results["qa"]["skipped"] == [
        {"line": 9, "reason": "gold answer 'the' is blank once normalised (case, punctuation and articles dropped)"}]
    r = results["retrieval"]
    assert r["n"] == 4 and r["recall@1"] == 0.75  # relative gold names found under absolute source names
    assert r["gold_sources_not_indexed"] == 1 and "1 of 4 questions name gold sources" in unindexed_warning(results)
    page = (tmp_path / "r" / "index.html").read_text()
    assert "1 line(s) of the QA set skipped" in page and "line 9: gold answer" in page and "1 of 4 questions" in page
