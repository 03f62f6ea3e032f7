"""An APIBench-style set from another hub (Torch Hub: gold answers are keyword-argument calls of its loader)
loads, passes the gold-vs-gold check and is scored end to end with the ``call`` metric; nothing is TF-Hub-only.
"""

import json

import pytest

from ragtune.config import Settings
from ragtune.evaluate.apibench import load_apibench
from ragtune.evaluate.gold import check_gold
from ragtune.evaluate.qa import api_doc_source, load_qa
from ragtune.evaluate.runner import evaluate
from ragtune.evaluate.scorers import get_metric
from ragtune.types import Answer
from test_evaluate_runner import MemoryKB  # the same in-memory retriever as the runner's tests

MODELS = [  # (repo, model, what it does): a hidden set of this shape must work as well as tfhub-apibench
    ("pytorch/vision", "resnet50", "classify photos of animals into a thousand classes"),
    ("pytorch/vision", "resnet18", "classify small images quickly on a phone"),
    ("pytorch/vision", "alexnet", "recognise objects with an early convolutional network"),
    ("pytorch/vision", "densenet121", "label medical scans with a densely connected network"),
    ("pytorch/vision", "deeplabv3_resnet101", "segment street scenes pixel by pixel"),
    ("ultralytics/yolov5", "yolov5s", "detect cars and pedestrians in video frames"),
    ("intel-isl/MiDaS", "MiDaS_small", "estimate depth from a single picture"),
    ("snakers4/silero-vad", "silero_vad", "find where speech starts in audio recordings"),
    ("NVIDIA/DeepLearningExamples:torchhub", "nvidia_tacotron2", "turn written text into spoken audio"),
    ("facebookresearch/pytorchvideo", "slow_r50", "recognise actions in sports videos"),
]


def gold_call(repo: str, model: str) -> str:
    return f"torch.hub.load(repo_or_dir='{repo}', model='{model}', pretrained=True)"


@pytest.fixture
def torchhub_folder(tmp_path):
    """A small synthetic Torch Hub APIBench folder in Gorilla's layout (api_docs.jsonl + eval.jsonl)."""
    folder = tmp_path / "torchhub-apibench"
    folder.mkdir()
    docs, rows = [], []
    for repo, model, task in MODELS:
        call = gold_call(repo, model)
        data = {"domain": "Computer vision", "framework": "PyTorch", "functionality": task, "api_name": model,
                "api_call": call, "api_arguments": {"repo_or_dir": repo, "model": model, "pretrained": "True"},
                "python_environment_requirements": ["torch"], "description": f"A pretrained {model} to {task}."}
        docs.append(data)
        output = {"domain": "Computer vision", "api_call": call, "api_provider": "PyTorch", "explanation": "..."}
        rows.append({"code": f"###Instruction: I want to {task}.\n###Output: {output}", "api_call": call,
                     "provider": "PyTorch", "api_data": data})
    (folder / "api_docs.jsonl").write_text("\n".join(map(json.dumps, docs)))
    (folder / "eval.jsonl").write_text("\n".join(map(json.dumps, rows)))
    return folder


def test_torchhub_folder_loads_with_generic_sources_and_system(torchhub_folder):
    qa = load_qa(torchhub_folder)
    assert qa.metric == "call" and "API calls" in qa.metric_reason
    assert qa.system == "Answer with the PyTorch API call."
    assert [d.source for d in qa.documents][:2] == ["pytorch/vision/resnet50", "pytorch/vision/resnet18"]
    assert qa.items[0].question == "I want to classify photos of animals into a thousand classes."
    assert all(it.gold_sources == [f"{r}/{m}"] for it, (r, m, _) in zip(qa.items, MODELS))
    check_gold(qa)  # every gold call scores 1 against itself
    splits = load_apibench(torchhub_folder)
    assert sum(map(len, splits.values())) == len(MODELS)
    assert splits["train"][0].messages[0]["content"] == "Answer with the PyTorch API call."


def test_api_doc_source_is_generic():
    assert api_doc_source({"api_call": "hub.KerasLayer('https://tfhub.dev/google/m/4/')"}) == "tfhub.dev/google/m/4"
    assert api_doc_source({"api_call": "pipeline('fill-mask', model='bert-base-uncased')"}) == \
        "fill-mask/bert-base-uncased"
    assert api_doc_source({"api_call": "load_model()", "api_name": "thing"}) == "thing"


class CallWriter:
    """RAG stand-in: writes the top passage's call with positional arguments, in prose, with a citation;
    without passages it always names resnet50."""

    def __init__(self, kb, generator, settings, instruction=None):
        self.kb = kb

    def ask(self, question):
        hits = self.kb.search(question, k=1) if self.kb else []
        repo, model = hits[0].source.rsplit("/", 1) if hits else ("pytorch/vision", "resnet50")
        text = f"Load it with `torch.hub.load('{repo}', '{model}', pretrained=True)` [1]."
        return Answer(text=text, hits=hits)


def test_torchhub_set_scored_end_to_end(torchhub_folder, tmp_path):
    results = evaluate(torchhub_folder, model=object(), out=tmp_path / "report", settings=Settings(),
                       variants=["base", "rag"], rag_factory=CallWriter,
                       kb_factory=lambda path, settings, embedder: MemoryKB())
    v = results["variants"]
    assert results["qa"]["metric"] == "call" and results["headline"] == "call"
    assert v["rag"]["score"] == v["rag"]["call"] == v["rag"]["api_match"] == 1.0  # positional = gold keywords
    assert v["base"]["score"] == pytest.approx(1 / len(MODELS))  # right only for resnet50
    assert results["best"] == "rag" and results["retrieval"]["recall@1"] == 1.0


def test_bench_and_eval_agree_on_one_answer():
    """bench/finetune_tfhub.py and `ragtune eval` score with the same metric implementation."""
    import importlib.util
    from pathlib import Path

    from ragtune.evaluate.qa import QAItem
    from ragtune.evaluate.scoring import score

    pytest.importorskip("transformers")
    path = Path(__file__).resolve().parents[1] / "bench" / "finetune_tfhub.py"
    spec = importlib.util.spec_from_file_location("bench_finetune_tfhub", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    gold = "hub.load('https://tfhub.dev/google/yamnet/1')"
    for reply, expected in [("hub.load('tfhub.dev/google/yamnet/1')", 1.0),
                            ("hub.load('https://tfhub.dev/google/yamnet/2')", 0.0),
                            ("hub.KerasLayer('https://tfhub.dev/google/yamnet/1')", 0.0)]:
        in_eval = score(QAItem("1", "q", [gold]), reply, False, [], "call")["call"]
        assert bench.is_correct(reply, gold) == (in_eval == 1.0) == bool(expected)
        assert get_metric("call")(reply, [gold]) == expected


def test_freshness_facts_for_a_call_set(torchhub_folder):
    import random

    from ragtune.evaluate.calls import call_score, callee, first_call
    from ragtune.evaluate.freshness import changed_facts, mutate, new_facts

    qa = load_qa(torchhub_folder)
    gold = qa.items[0].answers[0]
    changed = mutate(gold, random.Random(0))
    assert callee(first_call(changed)) == "torch.hub.load" and call_score(changed, gold) == 0.0
    items, docs = new_facts(qa, 2)
    assert items[0].answers == ["torch.hub.load(repo_or_dir='ragtune-fresh/counting-model-0', model='resnet50', "
                                "pretrained=True)"]
    assert items[0].answers[0] in docs[0].text
    check_gold(qa.__class__("fresh", items))
    items, docs, stale = changed_facts(qa, 3, seed=0)
    assert len(items) == 3 and all(it.answers[0] in d.text for it, d in zip(items, docs))
    assert all(call_score(it.answers[0], old) == 0.0 for it, old in zip(items, stale))
