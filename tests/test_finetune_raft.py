"""RAFT data: the training prompt is the inference prompt, the gold share and distractor count hold, no gold
passage is ever a distractor, and the target cites the gold passage."""

from __future__ import annotations

import re

import pytest

from ragtune.config import Settings
from ragtune.finetune.raft import holds_answer, natural_share, raft_examples
from ragtune.rag import RAG
from ragtune.types import Example, Hit

WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "jasper", "kelp",
         "lagoon", "marble", "nectar", "onyx", "pumice", "quartz", "russet", "sienna", "topaz"]


class WordKB:
    """In-memory retriever: passages ranked by shared words with the query, filtered by source."""

    def __init__(self, n: int):
        self.hits = [Hit(f"The code of item {i} is {WORDS[i % len(WORDS)]}{i}. Items are stored in hall {i % 3}.",
                         f"doc{i}.txt", 0.0, f"c{i}", {"dense_score": 0.5}) for i in range(n)]
        self.settings = Settings()

    def search(self, query, k=5, where=None):
        words = set(re.findall(r"\w+", query.lower()))
        pool = [h for h in self.hits if not where or h.source == where["source"]]
        ranked = sorted(pool, key=lambda h: (-len(words & set(re.findall(r"\w+", h.text.lower()))), h.id))
        return ranked[:k]


def _examples(n: int, with_source: bool = True) -> list[Example]:
    return [Example(messages=[{"role": "user", "content": f"What is the code of item {i}?"},
                              {"role": "assistant", "content": f"{WORDS[i % len(WORDS)]}{i}"}],
                    source="qa.jsonl", line=i + 1, gold_source=f"doc{i}.txt" if with_source else None)
            for i in range(n)]


def _settings(**raft) -> Settings:
    s = Settings()
    for key, value in raft.items():
        setattr(s.raft, key, value)
    return s


def _passages(prompt: str) -> list[str]:
    body = prompt.split("<passages>\n", 1)[1].split("\n</passages>", 1)[0]
    return [p.split("] ", 1)[1] for p in body.split("\n\n")]


@pytest.mark.parametrize("context_sentences", [0, 3])
def test_training_prompt_is_byte_identical_to_the_inference_prompt(monkeypatch, context_sentences):
    """For the passages RAFT chose, `RAG.prepare` at answer time sends exactly the training prompt (with context
    compression on or off)."""
    shown: list = []
    build = RAG.build

    def recording(self, question, hits):
        shown.append(list(hits))
        return build(self, question, hits)

    monkeypatch.setattr(RAG, "build", recording)
    settings = _settings(distractors=3, gold_share=1.0)
    settings.rag.context_sentences = context_sentences
    examples, _ = raft_examples(_examples(10), WordKB(30), settings)
    monkeypatch.setattr(RAG, "build", build)
    for ex, hits in zip(examples, shown):

        class Fixed:  # a retriever that returns exactly these passages, in this order
            def search(self, query, k=5, where=None):
                return hits

        question = ex.messages[1]["content"].rsplit("Question: ", 1)[1]
        assert RAG(Fixed(), None, settings).prepare(question, k=len(hits)).messages == ex.messages[:-1]
    if context_sentences == 0:  # whole passages: the prompt holds them verbatim
        assert all(h.text in examples[0].messages[1]["content"] for h in shown[0])


def _whole_passages(**raft) -> Settings:
    s = _settings(**raft)
    s.rag.context_sentences = 0
    return s


def test_gold_share_and_distractor_count_hold_over_a_seeded_set():
    examples, stats = raft_examples(_examples(200), WordKB(200), _whole_passages(distractors=4, gold_share=0.8))
    with_gold = [ex for ex in examples if re.search(r"\[\d\]$", ex.messages[-1]["content"])]
    assert 0.72 <= len(with_gold) / 200 <= 0.88
    assert stats.gold_in_prompt == len(with_gold) and stats.gold_found == stats.gold_by_source == 200
    for ex in examples:
        n_passages = len(_passages(ex.messages[1]["content"]))
        assert n_passages == (5 if ex in with_gold else 4)
    again, _ = raft_examples(_examples(200), WordKB(200), _whole_passages(distractors=4, gold_share=0.8))
    assert [e.messages for e in again] == [e.messages for e in examples]  # seeded: a resumed run rebuilds the same


def test_absent_abstain_trains_a_prompt_without_the_gold_passage_to_abstain():
    from ragtune.models.prompts import ABSTAIN_TEXT

    settings = _whole_passages(distractors=2, gold_share=0.5)
    examples, stats = raft_examples(_examples(40), WordKB(40), settings)
    settings.raft.absent = "abstain"
    abstaining, again = raft_examples(_examples(40), WordKB(40), settings)
    assert [e.messages[:-1] for e in abstaining] == [e.messages[:-1] for e in examples]  # the same prompts
    for plain, taught in zip(examples, abstaining):
        cited = re.search(r"\[\d\]$", plain.messages[-1]["content"])
        assert taught.messages[-1]["content"] == (plain.messages[-1]["content"] if cited else ABSTAIN_TEXT)
    assert 0 < stats.gold_in_prompt == again.gold_in_prompt < 40  # both kinds of prompt were made


class HalfKB(WordKB):
    """Retrieval that ranks the right passage first for even-numbered items and fourth for odd ones (for every
    item when ``always`` is set)."""

    always = False

    def search(self, query, k=5, where=None):
        if where:
            return super().search(query, k, where)
        item = int(re.findall(r"\d+", query)[0])
        gold, others = self.hits[item], [h for h in self.hits if h is not self.hits[item]]
        return ([gold] + others if item % 2 == 0 or self.always else others[:3] + [gold] + others[3:])[:k]


def test_unset_gold_share_is_how_often_retrieval_itself_holds_the_answer():
    """Unset, the gold share is measured: the training questions whose answer the retriever brings into the top
    retrieval.k (here half of them), so training shows the model the mix of prompts it will be shown."""
    settings = _whole_passages(distractors=2)
    settings.retrieval.k = 3
    assert settings.raft.gold_share is None
    examples, stats = raft_examples(_examples(200), HalfKB(200), settings)
    assert stats.retrieved_gold == 100 and stats.gold_share == 0.5
    assert 0.42 <= stats.gold_in_prompt / 200 <= 0.58
    right = HalfKB(200)
    right.always = True
    _, easy = raft_examples(_examples(200), right, settings)  # retrieval always right: capped at 0.9
    assert easy.retrieved_gold == 200 and easy.gold_share == 0.9 and 0.84 <= easy.gold_in_prompt / 200 <= 0.96
    settings.raft.gold_share = 0.8  # a value set is used as it is
    _, given = raft_examples(_examples(200), HalfKB(200), settings)
    assert given.gold_share == 0.8 and given.retrieved_gold == 100
    assert natural_share(10, 100) == 0.5 and natural_share(70, 100) == 0.7 and natural_share(0, 0) == 0.5


@pytest.mark.parametrize("with_source", [True, False])
def test_no_gold_passage_is_ever_a_distractor_and_the_target_cites_the_gold(with_source):
    examples, stats = raft_examples(_examples(40, with_source), WordKB(40), _whole_passages(distractors=3, gold_share=0.5))
    assert stats.gold_found == 40
    for ex in examples:
        answer = ex.messages[-1]["content"]
        gold = answer.split(" [")[0]
        passages = _passages(ex.messages[1]["content"])
        cited = re.findall(r"\[(\d)\]$", answer)
        holders = [i for i, p in enumerate(passages, 1) if holds_answer(p, gold)]
        assert holders == ([int(cited[0])] if cited else [])  # only the cited passage holds the answer


def test_unset_distractors_give_a_prompt_as_many_passages_as_an_answer():
    """raft.distractors unset: retrieval.k - 1 distractors, so with the gold the prompt holds k passages."""
    for k in (2, 4):
        settings = _whole_passages(gold_share=1.0)
        settings.retrieval.k = k
        assert settings.raft.distractors is None
        examples, stats = raft_examples(_examples(12), WordKB(30), settings)
        assert {len(_passages(ex.messages[1]["content"])) for ex in examples} == {k}
        assert stats.distractors == 12 * (k - 1)


def test_training_length_holds_the_longest_rag_prompt_whole(tiny_lm_dir):
    """RAFT prompts are longer than a plain fine-tune's limit: `seq_tokens` raises it so no answer token is cut."""
    from transformers import AutoTokenizer

    from ragtune.finetune.encode import encode_examples
    from ragtune.finetune.raft import seq_tokens

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    examples, _ = raft_examples(_examples(20), WordKB(40), _whole_passages(distractors=6, gold_share=1.0))
    cut, stats = encode_examples(tok, examples, 48)
    assert stats["truncated"] == 20  # at the old limit every example loses its answer's end
    length = seq_tokens(examples, tok, 48)
    whole, stats = encode_examples(tok, examples, length)
    assert length > 48 and stats == {"truncated": 0, "no_answer": 0} and len(whole) == 20
    assert all(e.labels[-1] != -100 for e in whole)  # the answer, to its last token, carries the loss
    assert seq_tokens(examples, tok, 10 ** 5) == 10 ** 5  # never below the configured floor


def test_reasoning_target_quotes_the_supporting_sentence():
    examples, _ = raft_examples(_examples(5), WordKB(10), _whole_passages(distractors=2, gold_share=1.0, reasoning=True))
    target = examples[0].messages[-1]["content"]
    assert re.fullmatch(r'\[(\d)\] says: "The code of item 0 is amber0\."\nAnswer: amber0 \[\1\]', target), target


def test_a_task_instruction_rides_into_the_rag_system_prompt():
    ex = [Example(messages=[{"role": "system", "content": "Answer with the code only."},
                            {"role": "user", "content": "What is the code of item 1?"},
                            {"role": "assistant", "content": "basalt1"}], gold_source="doc1.txt")]
    out, _ = raft_examples(ex, WordKB(5), _settings(distractors=1, gold_share=1.0))
    assert out[0].messages[0]["content"].startswith("Answer with the code only.\nAnswer the question using only")


def test_cli_finetune_raft_trains_on_rag_prompts_and_data_check_counts_gold(tiny_embedder_dir, tiny_lm_dir, tmp_path,
                                                                            monkeypatch):
    """`ragtune data check --kb` and `ragtune finetune --raft --kb` end to end, with tiny models built in code."""
    import json

    from typer.testing import CliRunner

    from ragtune.cli.main import _register, app
    from ragtune.index.knowledge_base import KnowledgeBase

    _register()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_EMBEDDER__MODEL", str(tiny_embedder_dir))
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, word in enumerate(WORDS[:6]):
        (docs / f"item{i}.txt").write_text(f"The code of item {i} is {word}. Item {i} is kept in hall {i % 2}.")
    KnowledgeBase(tmp_path / "kb").add([docs])
    rows = [{"question": f"What is the code of item {i}?", "answer": w} for i, w in enumerate(WORDS[:6])]
    rows.append({"question": "What colour is the sky?", "answer": "blue"})  # no passage holds it
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    runner = CliRunner()
    check = runner.invoke(app, ["data", "check", "qa.jsonl", "--kb", "kb", "--no-tokens", "--json"])
    raft = json.loads(check.output)["stats"]["raft"]
    assert (raft["with_gold_passage"], raft["by_answer_text"], raft["without"]) == (6, 6, ["qa.jsonl:7"])
    result = runner.invoke(app, ["finetune", "qa.jsonl", "--raft", "--kb", "kb", "--model", str(tiny_lm_dir),
                                 "--distractors", "2", "--gold-share", "1", "--max-steps", "1", "--out", "ft"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ft" / "raft.json").read_text())["gold_in_prompt"] == 6
    assert (tmp_path / "ft" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "ft" / "training_report.json").read_text())["hyperparameters"]["epochs"] == 2.0
    no_kb = runner.invoke(app, ["finetune", "qa.jsonl", "--raft", "--model", str(tiny_lm_dir), "--out", "ft2"])
    assert no_kb.exit_code != 0 and "--raft needs --kb" in str(no_kb.exception or no_kb.output)
