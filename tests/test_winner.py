"""The winner record of `ragtune choose` and running it: `ask --choice` and `serve --choice` answer exactly as the
contestant answered in the bake-off (tiny models built in code, greedy decoding), and every bad choose folder
gets one clear line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from _serve_util import wait_for_server
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.winner import CONTESTANTS, answer_settings, pick, read_winner, write_winner

PLACES = ["Zembla", "Quorra", "Morbek", "Tarkin", "Velmora", "Ostrava", "Kelpie", "Brindle", "Castor", "Dunmore",
          "Elarin", "Fennick"]


def _cli():
    from ragtune.cli.main import _register, app

    _register()
    return app


@pytest.fixture(scope="module")
def chosen(tmp_path_factory, tiny_embedder_dir, tiny_lm_dir):
    """A finished `ragtune choose` run on 12 questions (tiny models, 2 training steps): the folder, its console
    output and the environment it ran in."""
    tmp = tmp_path_factory.mktemp("choose")
    docs = tmp / "docs"
    docs.mkdir()
    rows = []
    for i, place in enumerate(PLACES):
        (docs / f"land{i}.txt").write_text(f"The capital of Land {i} is {place}. Land {i} trades in salt and wool.")
        rows.append({"question": f"What is the capital of Land {i}?", "answers": [place],
                     "gold_sources": [f"docs/land{i}.txt"]})
    (tmp / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    env = {"RAGTUNE_EMBEDDER__MODEL": str(tiny_embedder_dir), "RAGTUNE_GENERATOR__MODEL": str(tiny_lm_dir),
           "RAGTUNE_RAG__MIN_RELEVANCE": "-1", "RAGTUNE_FINETUNE__MAX_STEPS": "2",
           "RAGTUNE_CHOOSE__K": "[2]", "RAGTUNE_CHOOSE__CONTEXT_SENTENCES": "[0]",
           # what the winner is, not how it was tuned or topped up: one template, the team's questions only
           "RAGTUNE_CHOOSE__TEMPLATES": '["fenced"]', "RAGTUNE_CHOOSE__SYNTH_TEST": "0"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        for key, value in env.items():
            mp.setenv(key, value)
        result = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "choice"])
    assert result.exit_code == 0, result.output
    return tmp / "choice", result.output, env


@pytest.fixture
def in_choice_env(chosen, monkeypatch):
    """Beside the choose folder, without the settings `choose` ran under: the record alone must say how to run."""
    out, _, env = chosen
    monkeypatch.chdir(out.parent)
    for key in env:
        monkeypatch.delenv(key, raising=False)
    return out


def logged(out: Path, contestant: str) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return {r["question"]: r["prediction"] for r in rows if r.get("variant") == contestant}


def test_contestants_are_the_evaluated_variants():
    from ragtune.evaluate.variants import VARIANTS

    assert {n: (v.model if v.model != "base" else None, v.retrieval) for n, v in VARIANTS.items()} == CONTESTANTS


def test_an_inconclusive_verdict_goes_to_the_simplest_tied_leader():
    trained = ["finetuned", "raft"]
    assert pick("both", "raft", [], trained)[0] == "finetuned+rag"
    assert pick("finetune", "finetuned", [], trained)[0] == "finetuned"
    name, why = pick("inconclusive", "raft", ["finetuned+rag", "rag"], trained)
    assert name == "rag" and "simplest" in why and "raft" in why
    assert pick("inconclusive", "raft", ["finetuned"], trained)[0] == "finetuned"
    assert pick("inconclusive", "raft", [], ["finetuned"])[0] == "base"  # RAFT not trained: nothing to run


def test_the_record_holds_the_measured_settings_and_relative_paths(tmp_path):
    settings = Settings()
    settings.retrieval.k, settings.rag.context_sentences, settings.generator.max_new_tokens = 7, 0, 33
    (tmp_path / "kb").mkdir()
    w = write_winner(tmp_path, recommendation="rag", best="rag", tied=[], base_model="smollm2", settings=settings,
                     instruction="Answer with a city.")
    assert (w.contestant, w.model, w.kb_path, w.instruction) == ("rag", "smollm2", tmp_path.resolve() / "kb",
                                                                 "Answer with a city.")
    assert w.overrides()["retrieval.k"] == 7 and w.overrides()["generator.max_new_tokens"] == 33
    assert w.settings == answer_settings(settings) and "generator.stop" in w.settings
    assert "kb = \"kb\"" in (tmp_path / "winner.toml").read_text()
    with pytest.raises(InputError, match="--contestant raft: not trained"):
        read_winner(tmp_path, "raft")
    with pytest.raises(InputError, match="unknown; choose from base, rag"):
        read_winner(tmp_path, "lora")
    assert read_winner(tmp_path, "base").kb is None  # a contestant that does not retrieve runs without the kb


def test_bad_choose_folders_get_one_line(tmp_path, chosen):
    out, _, _ = chosen
    with pytest.raises(InputError, match="not a `ragtune choose` output folder"):
        read_winner(tmp_path)
    (tmp_path / "choose.json").write_text("{}")
    with pytest.raises(InputError, match="has not finished"):
        read_winner(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("kb", "tune", "checkpoints"))
    (copy / "kb").mkdir()
    (copy / "finetuned" / "adapter_model.safetensors").unlink()
    with pytest.raises(InputError, match="adapter files deleted") as err:
        read_winner(copy, "finetuned")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"finetuned: adapter files deleted"):
        read_winner(copy, "raft")  # RAFT was trained from the fine-tuned adapter, which is gone
    result = CliRunner().invoke(_cli(), ["ask", "q?", "--choice", str(copy), "--contestant", "finetuned_rag"])
    assert result.exit_code == 1 and "adapter files deleted" in str(result.exception)
    result = CliRunner().invoke(_cli(), ["ask", "q?", "--choice", str(out), "--model", "smollm2"])
    assert "drop --model" in str(result.exception)
    result = CliRunner().invoke(_cli(), ["ask", "q?", "--contestant", "rag"])
    assert "needs --choice" in str(result.exception)


def test_choose_records_the_winner_and_prints_how_to_run_it(chosen):
    out, console, _ = chosen
    results = json.loads((out / "results.json").read_text())
    w = read_winner(out)
    expected, _ = pick(results["advice"]["recommendation"], results["best"], results["tied_with_best"],
                       ["finetuned", "raft"])
    assert w.contestant == expected and w.recommendation == results["advice"]["recommendation"]
    assert w.settings["retrieval.k"] == results["settings"]["retrieval"]["k"] == 2
    assert w.settings["generator.max_new_tokens"] == results["settings"]["generator"]["max_new_tokens"]
    assert f"winner: {w.contestant}" in console
    for command in (f'ragtune ask "your question" --choice {out.name}', f"ragtune serve --choice {out.name}",
                    f"ragtune export {out.name} --out choice-export"):
        assert command in console


@pytest.mark.parametrize("contestant", list(CONTESTANTS))
def test_ask_choice_answers_as_the_contestant_answered_in_the_bakeoff(in_choice_env, contestant):
    out = in_choice_env
    expected = logged(out, contestant)
    assert expected
    for question, prediction in list(expected.items())[:3]:
        result = CliRunner().invoke(_cli(), ["ask", question, "--choice", out.name, "--contestant", contestant,
                                             "--json"])
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["contestant"] == contestant
        assert body["answer"] == prediction, question


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("contestant", [None, "raft"])  # the recommended one, and an adapter that retrieves
def test_serve_choice_serves_the_contestant_alone_with_its_answers(in_choice_env, contestant):
    out = in_choice_env
    winner = read_winner(out, contestant)
    port = _free_port()
    import ragtune

    src = str(Path(ragtune.__file__).resolve().parents[1])  # this checkout's code, whatever the cwd
    env = {**os.environ, "RAGTUNE_SERVE__RATE_LIMIT_PER_MINUTE": "0", "PYTHONPATH": src}
    env.pop("RAGTUNE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "ragtune.cli.main", "serve", "--choice", str(out), "--port",
                             str(port)] + (["--contestant", contestant] if contestant else []), cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(proc, url)
        models = [m["id"] for m in httpx.get(url + "/v1/models").json()["data"] if m["type"] == "chat"]
        assert models == [winner.contestant]
        info = httpx.get(url + "/v1/info").json()
        assert info["contestant"] == winner.contestant and info["kb"] == winner.retrieves
        assert "info.contestant" in httpx.get(url + "/static/app.js").text  # the page says who answers
        for question, prediction in list(logged(out, winner.contestant).items())[:3]:
            r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": winner.contestant, "messages": [{"role": "user", "content": question}]})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == prediction
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_adapters_choose_trains_are_standard_peft_folders(chosen, tiny_lm_dir):
    """What `finetune` writes loads with plain peft on the base model's HF folder (as vLLM's LoRA serving takes
    it), and gives the logits ragtune's loader gives."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ragtune.models.loading import load_model_and_tokenizer

    out, _, _ = chosen
    config = json.loads((out / "finetuned" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and Path(config["base_model_name_or_path"]) == tiny_lm_dir
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm_dir), out / "finetuned").eval()
    ours, tokenizer = load_model_and_tokenizer(str(out / "finetuned"))
    ids = torch.tensor([tokenizer("What is the capital of Land 3?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, ours(ids).logits, atol=1e-5)
        base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()(ids).logits
        assert not torch.allclose(plain(ids).logits, base, atol=1e-4)  # the adapter changes the model


def test_an_exported_contestant_served_by_an_openai_endpoint_answers_as_in_the_bakeoff(in_choice_env, chosen,
                                                                                         tmp_path):
    """docs/serve.md's recipe: export the contestant, serve the export on an OpenAI-compatible server (here
    `ragtune serve --model EXPORT` stands in for vLLM / Ollama), point ragtune's retrieval at it."""
    out = in_choice_env
    result = CliRunner().invoke(_cli(), ["export", str(out), "--out", str(tmp_path / "raft-hf"), "--contestant",
                                         "raft"])
    assert result.exit_code == 0, result.output
    import ragtune

    port = _free_port()
    src = str(Path(ragtune.__file__).resolve().parents[1])
    env = {**os.environ, "RAGTUNE_SERVE__RATE_LIMIT_PER_MINUTE": "0", "PYTHONPATH": src}
    env.pop("RAGTUNE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "ragtune.cli.main", "serve", "--model", str(tmp_path / "raft-hf"),
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_server(proc, f"http://127.0.0.1:{port}")
        expected = logged(out, "raft")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAGTUNE_GENERATOR__BACKEND", "openai")
            mp.setenv("RAGTUNE_GENERATOR__BASE_URL", f"http://127.0.0.1:{port}/v1")
            mp.setenv("RAGTUNE_GENERATOR__MODEL", "base")  # the name the stand-in serves the export under
            mp.setenv("RAGTUNE_EMBEDDER__MODEL", chosen[2]["RAGTUNE_EMBEDDER__MODEL"])  # the kb's, as choose ran
            for question, prediction in list(expected.items())[:3]:
                result = CliRunner().invoke(_cli(), ["ask", question, "--kb", str(out / "kb"), "--json"])
                assert result.exit_code == 0, result.output
                assert json.loads(result.stdout)["answer"] == prediction
    finally:
        proc.terminate()
        proc.wait(timeout=60)



def test_a_served_contestant_is_the_only_configuration(tmp_path, tiny_embedder_dir):
    """In process: /v1/models and /v1/info name the contestant; a closed-book one answers with the prompt it was
    measured with (the system prompt first), not the raw conversation."""
    from fastapi.testclient import TestClient

    from _serve_util import CitingGenerator, make_kb, make_settings
    from ragtune.serve import create_app
    from ragtune.winner import Winner

    settings = make_settings(tiny_embedder_dir)
    kb = make_kb(tmp_path / "kb", settings)
    seen: list[list[dict]] = []

    class Recording(CitingGenerator):
        def stream(self, messages, **kw):
            seen.append(messages)
            return super().stream(messages, **kw)

    for name, kb_path, uses_rag in (("finetuned+rag", "kb", True), ("finetuned", None, False)):
        winner = Winner(tmp_path, name, "both", "tiny", "finetuned", kb_path)
        with TestClient(create_app(kb if uses_rag else None, base=Recording(), settings=settings, api_key="",
                                   winner=winner)) as client:
            models = client.get("/v1/models").json()["data"]
            assert [(m["id"], m["rag"]) for m in models if m["type"] == "chat"] == [(name, uses_rag)]
            assert client.get("/v1/info").json()["contestant"] == name
            r = client.post("/v1/chat/completions", json={"model": name, "messages": [
                {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "How long is the Zorblax warranty?"}]})
            assert r.status_code == 200, r.text
            assert seen[-1][0]["role"] == "system" and len(seen[-1]) == 2  # the measured prompt, one question
            assert "Zorblax" in seen[-1][-1]["content"]
