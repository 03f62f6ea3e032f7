"""RAFT from a knowledge base alone (`ragtune finetune --kb KB --raft`, no dataset): synthetic pairs labelled so,
held-out questions from chunks the training never used, the training prompt byte for byte what `ask` sends,
and `ask --model DIR` answering with the trained adapter; bad inputs are one line each."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragtune.cli.main import _register, app
from ragtune.finetune.synth import kb_chunks

TOWNS = ["Arlen", "Bressa", "Corvel", "Dunmore", "Eskby", "Fallow", "Garrow", "Hestle"]


def _docs(folder):
    folder.mkdir()
    for i, town in enumerate(TOWNS):
        (folder / f"{town.lower()}.txt").write_text(
            f"The ferry to {town} leaves from pier {i + 3} every morning. "
            f"A return ticket to {town} costs {12 + i} euros at the harbour office. "
            f"The crossing to {town} takes {40 + 5 * i} minutes in calm weather. "
            f"Captain {TOWNS[(i + 1) % len(TOWNS)]}son has sailed the {town} route since {1990 + i}.")


@pytest.fixture
def kb(tmp_path, monkeypatch, tiny_embedder_dir):
    from ragtune.index.knowledge_base import KnowledgeBase

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_EMBEDDER__MODEL", str(tiny_embedder_dir))
    monkeypatch.setenv("RAGTUNE_RAG__MIN_RELEVANCE", "0")  # a random embedder: never abstain on its scores
    _docs(tmp_path / "docs")
    KnowledgeBase(tmp_path / "kb").add([tmp_path / "docs"], progress=False)
    _register()
    return tmp_path / "kb"


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_raft_from_a_kb_trains_on_synthetic_pairs_and_ask_uses_the_adapter(kb, tiny_lm_dir, tmp_path, monkeypatch,
                                                                          one_torch_thread):
    from ragtune.config import load_settings
    from ragtune.finetune.train import FineTuner
    from ragtune.models.backends import load_generator
    from ragtune.rag import RAG

    built, trained = [], []
    build, fit = RAG.build, FineTuner.fit

    def recording_build(self, question, hits):  # the passages RAFT put in each prompt
        built.append((question, list(hits)))
        return build(self, question, hits)

    def recording_fit(self, train, *args, **kwargs):  # the examples training is handed
        trained.extend(train)
        return fit(self, train, *args, **kwargs)

    monkeypatch.setattr(RAG, "build", recording_build)
    monkeypatch.setattr(FineTuner, "fit", recording_fit)
    monkeypatch.setenv("RAGTUNE_RAFT__KB_KINDS", '["cloze", "wh"]')  # raft.kb_kinds reaches the synthesis
    result = CliRunner().invoke(app, ["finetune", "--kb", "kb", "--raft", "--model", str(tiny_lm_dir),
                                      "--max-steps", "2", "--out", "ft"])
    monkeypatch.setattr(RAG, "build", build)
    assert result.exit_code == 0, result.output
    assert "estimated training time: about" in result.stderr and "held-out questions" in result.stderr
    assert "--kb kb --model ft" in result.stdout

    report = json.loads((tmp_path / "ft" / "training_report.json").read_text())
    assert report["data"]["synthetic"] is True and "from the chunks of kb" in report["data"]["origin"]
    assert report["steps"] == 2 and "**synthetic**" in (tmp_path / "ft" / "model_card.md").read_text()
    raft = json.loads((tmp_path / "ft" / "raft.json").read_text())
    assert raft["synthetic"] is True and raft["gold_found"] == raft["examples"] > 0

    # held out: questions from chunks no training pair came from, and none of them trained on
    synthetic, heldout = _jsonl(tmp_path / "ft" / "synthetic.jsonl"), _jsonl(tmp_path / "ft" / "heldout.jsonl")
    assert heldout and len(synthetic) == raft["pairs_used"] == len(built)
    assert {p["kind"] for p in synthetic} == {"cloze", "wh"}
    assert {p["chunk_id"] for p in heldout}.isdisjoint(p["chunk_id"] for p in synthetic)
    assert {p["chunk_id"] for p in heldout} == set(raft["heldout_chunks"])
    assert {p["question"] for p in heldout}.isdisjoint(p["question"] for p in synthetic)
    assert {p["chunk_id"] for p in synthetic} | {p["chunk_id"] for p in heldout} <= {c.id for c in kb_chunks(_open(kb))}

    # every training prompt is byte for byte the prompt `ask` builds for the same passages: the kb's settings and
    # embedder (context compression), the trained model's generator (its tokenizer fits the passages)
    settings = load_settings(kb)
    knowledge_base = _open(kb)
    generator = load_generator(settings.generator.model_copy(update={"model": "ft"}))
    assert len(trained) == len(built)
    for example, (question, hits) in zip(trained, built):

        class Fixed:  # the knowledge base, returning exactly these passages in this order
            embedder = knowledge_base.embedder

            def search(self, query, k=5, where=None):
                return hits

        assert RAG(Fixed(), generator, settings).prepare(question, k=len(hits)).messages == example.messages[:-1]

    # `ask --kb kb --model ft` loads the trained folder (an adapter on its base) and answers from the kb
    from ragtune.models import backends

    loaded = []

    def recording_load(settings=None, **overrides):
        loaded.append(settings.model)
        return load_generator(settings, **overrides)

    monkeypatch.setattr(backends, "load_generator", recording_load)
    monkeypatch.setenv("RAGTUNE_GENERATOR__MAX_NEW_TOKENS", "4")
    asked = CliRunner().invoke(app, ["ask", heldout[0]["question"], "--kb", "kb", "--model", "ft", "--json"])
    assert asked.exit_code == 0, asked.output
    assert loaded == ["ft"] and (tmp_path / "ft" / "adapter_config.json").is_file()
    assert json.loads(asked.stdout)["citations"] or json.loads(asked.stdout)["answer"] is not None


def _open(folder):
    from ragtune.index.knowledge_base import KnowledgeBase

    return KnowledgeBase(folder)


@pytest.mark.parametrize("args, message", [
    (["--kb", "missing", "--raft"], "error: --raft needs --kb: a knowledge-base folder (missing); build one with "
                                    "`ragtune ingest DOCS --kb DIR`"),
    (["--raft"], "error: --raft needs --kb: a knowledge-base folder (none given); build one with "
                 "`ragtune ingest DOCS --kb DIR`"),
    (["--kb", "kb"], "error: finetune: no DATASET given; pass a training file, or --kb KB --raft to train a RAFT "
                     "reader on pairs synthesised from the knowledge base"),
    (["--kb", "empty", "--raft"], "error: empty: the knowledge base holds no chunks; add documents first with "
                                  "`ragtune ingest DOCS --kb empty`"),
    (["--kb", "kb", "--raft", "--validation", "v.jsonl"], "error: --validation v.jsonl: needs a DATASET; with --kb "
                                                          "KB --raft alone the validation part is split off the "
                                                          "synthesised pairs"),
])
def test_bad_inputs_are_one_line_each(kb, tiny_lm_dir, tmp_path, monkeypatch, capsys, args, message):
    from _faults_util import run_main

    (tmp_path / "empty").mkdir()
    code, _, err = run_main(monkeypatch, capsys, "finetune", *args, "--model", str(tiny_lm_dir), "--out", "ft")
    assert code == 1
    assert err.strip().splitlines() == [message]
    assert not (tmp_path / "ft" / "training_report.json").exists()
