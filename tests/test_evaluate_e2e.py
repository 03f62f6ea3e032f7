"""End to end on tiny random models: fine-tune an adapter, index a SQuAD-style folder, run all four variants,
get results.json and index.html. Scores of random models are meaningless; the wiring and the report are not."""

import json

import pytest

from ragtune.config import load_settings

FACTS = {"Freedonia": ["The capital of Freedonia is Zembla. It lies on the river Quorra."],
         "Sylvania": ["The capital of Sylvania is Morbek. Its founder was Tarkin the Bold."]}
QUESTIONS = [("Freedonia", "What is the capital of Freedonia?", "Zembla"),
             ("Freedonia", "Which river does Zembla lie on?", "Quorra"),
             ("Sylvania", "What is the capital of Sylvania?", "Morbek"),
             ("Sylvania", "Who founded Sylvania?", "Tarkin the Bold")]


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, tiny_lm_dir):
    from ragtune.finetune import finetune

    out = tmp_path_factory.mktemp("ft") / "adapter"
    train = tmp_path_factory.mktemp("data") / "train.jsonl"
    train.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for _, q, a in QUESTIONS[:2]))
    finetune(train, model=str(tiny_lm_dir), out=out, validation=train, max_steps=2, batch_size=2,
             max_seq_tokens=64, eval_every=1, save_every=1)
    return out, train


def test_eval_end_to_end_on_tiny_models(tmp_path, tiny_lm_dir, tiny_embedder_dir, tiny_adapter):
    pytest.importorskip("ragtune.rag")
    from ragtune.advise import advise
    from ragtune.evaluate.runner import evaluate

    adapter, train = tiny_adapter
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "articles.jsonl").write_text("".join(json.dumps({"title": t, "paragraphs": p}) + "\n"
                                                   for t, p in FACTS.items()))
    (folder / "qa.jsonl").write_text("".join(json.dumps(
        {"id": f"q{i}", "title": t, "paragraph_index": 0, "question": q, "answers": [a], "is_impossible": False}) + "\n"
        for i, (t, q, a) in enumerate(QUESTIONS)))
    settings = load_settings(overrides={"embedder.model": str(tiny_embedder_dir), "generator.max_new_tokens": 6,
                                        "retrieval.k": 2, "rag.min_relevance": -1.0})
    out = tmp_path / "report"
    results = evaluate(folder, kb=tmp_path / "kb", model=str(tiny_lm_dir), finetuned=str(adapter), out=out,
                       settings=settings, train_qa=train, freshness=True)

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(on_disk))  # plain JSON, no NaN
    assert set(on_disk["variants"]) == {"base", "rag", "finetuned", "finetuned+rag"}
    for v in on_disk["variants"].values():
        assert v["n"] == 4 and 0.0 <= v["f1"] <= 1.0 and len(v["ci"]["f1"]) == 2 and v["latency_s"]["p95"] > 0
    # retrieval is real: 2 documents, k=2, so every gold paragraph is retrieved
    assert on_disk["retrieval"]["recall@k"] == 1.0
    assert on_disk["training"]["tokens"] > 0 and on_disk["training"]["seconds"] >= 0
    assert on_disk["variants"]["finetuned"]["generalisation"]["seen"]["n"] == 2
    assert on_disk["freshness"]["n_new"] == 5 and "rag" in on_disk["freshness"]["variants"]
    rag_hits = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(r["hits"] for r in rag_hits if r["variant"] in ("rag", "finetuned+rag"))
    assert any(r["variant"] == "fresh:rag" for r in rag_hits)  # the freshness answers are logged too
    page = (out / "index.html").read_text()
    assert "<h2>Quality" in page and "Freedonia#0" in page
    assert advise({}, out).recommendation in ("rag", "finetune", "both", "raft", "base", "inconclusive")
    assert results["variants"]["rag"]["f1"] == on_disk["variants"]["rag"]["f1"]
