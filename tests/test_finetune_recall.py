"""With default settings, fine-tuning the packaged model on a small fact set teaches the facts."""

from __future__ import annotations

import json

import pytest

FACTS = [("capital", "Zorbia", "Quenlith"), ("national animal", "Velmora", "the silver lynx"),
         ("currency", "Tarsk", "the drume"), ("founder", "Ostrava Prime", "Ilsa Marrow")]
PHRASINGS = ["What is the {a} of {c}?", "Tell me the {a} of {c}.", "Which is {c}'s {a}?", "What's {c}'s {a}?",
             "Do you know the {a} of {c}?", "Name the {a} of {c}."]


@pytest.mark.integration
@pytest.mark.usefixtures("one_torch_thread")  # on a busy machine two threads mostly wait for each other
def test_default_settings_teach_four_facts_from_24_examples(tmp_path):
    import ragtune
    from ragtune.config import FinetuneSettings
    from ragtune.finetune.train import FineTuner
    from ragtune.models.backends import load_generator

    data = tmp_path / "facts.jsonl"
    data.write_text("".join(json.dumps({"question": p.format(a=a, c=c), "answer": f"The {a} of {c} is {v}."}) + "\n"
                            for a, c, v in FACTS for p in PHRASINGS))
    # the packaged defaults, not a ragtune.toml that happens to sit in the working folder
    result = FineTuner("smollm2", settings=FinetuneSettings()).fit(data, out=tmp_path / "ft")
    evals = result.report["evaluations"]
    assert len(evals) >= 3 and evals[-1]["val_loss"] < 0.5 * evals[0]["val_loss"]
    assert "overfitting" in result.report and result.report["plan"]["total"] >= 24

    rag = ragtune.RAG(None, generator=load_generator(str(tmp_path / "ft")))
    questions = [f"Could you tell me the {a} of {c}?" for a, c, _ in FACTS]  # a phrasing never trained on
    answers = [rag.ask(q).text for q in questions]
    recalled = [v.split()[-1].lower() in ans.lower() for (_, _, v), ans in zip(FACTS, answers)]
    assert sum(recalled) >= 3, list(zip(questions, answers))
