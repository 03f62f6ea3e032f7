"""Fault suite, silent wrong results and tracebacks at the CLI: absurd retrieval.k from every source, a
ragtune.toml that is not UTF-8, `eval --kb` of a folder that holds no knowledge base; each is one line on stderr."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from _faults_util import HashEmbedder, make_kb, one_line, run_main
from ragtune.cli.main import _register, app
from ragtune.config import load_settings
from ragtune.errors import ConfigError, InputError


def invoke(*args: str):
    _register()
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("value", ["0", "-1"])
def test_zero_or_negative_retrieval_k_is_refused_from_toml_environment_and_set(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__K", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"setting 'retrieval.k' = '{value}': Input should be greater than or equal to 1" in one_line(str(info.value))
    monkeypatch.delenv("RAGTUNE_RETRIEVAL__K")
    (tmp_path / "ragtune.toml").write_text(f"[retrieval]\nk = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"setting 'retrieval.k' = {value}:" in one_line(str(info.value))
    (tmp_path / "ragtune.toml").unlink()
    res = invoke("config", "--set", f"retrieval.k={value}")
    assert res.exit_code == 1 and f"setting 'retrieval.k' = '{value}'" in one_line(str(res.exception))
    with pytest.raises(ConfigError, match="retrieval.candidates"):
        load_settings(overrides={"retrieval.candidates": 0})


@pytest.mark.parametrize("flag", ["0", "-1"])
@pytest.mark.parametrize("command", ["search", "ask"])
def test_search_and_ask_with_k_zero_or_negative_exit_1_naming_the_field(tmp_path, monkeypatch, capsys, flag, command):
    kb = make_kb(tmp_path)
    monkeypatch.setattr("ragtune.index.knowledge_base.make_embedder", lambda settings: HashEmbedder())
    code, out, err = run_main(monkeypatch, capsys, command, "zephyr warranty", "--kb", str(kb.path), "-k", flag)
    assert code == 1 and "no matches" not in out
    assert one_line(err.strip()).startswith(f"error: setting 'retrieval.k' = {flag}")
    with pytest.raises(ConfigError, match="retrieval.k' = -2"):  # the library refuses it too
        kb.search("zephyr", k=-2)


def test_ragtune_toml_that_is_not_utf8_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragtune.toml").write_bytes("[generator]\nmodel = \"caf\u00e9\"\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = one_line(str(info.value))
    assert str(tmp_path / "ragtune.toml") in message and "not UTF-8" in message and "re-save it as UTF-8" in message
    code, _, err = run_main(monkeypatch, capsys, "config")
    assert code == 1 and "not UTF-8" in one_line(err.strip())


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_eval_kb_of_a_folder_without_a_knowledge_base_is_an_error_naming_it(tmp_path, monkeypatch, state):
    monkeypatch.chdir(tmp_path)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "How long is the warranty?", "answers": ["twelve years"]}) + "\n")
    kb = tmp_path / "kb-typo"
    if state == "empty":
        kb.mkdir()
    res = invoke("eval", str(qa), "--kb", str(kb), "--out", str(tmp_path / "report"))
    assert res.exit_code == 1 and isinstance(res.exception, InputError)
    message = one_line(str(res.exception))
    assert f"--kb {kb}" in message and "ragtune ingest" in message
    assert kb.exists() == (state == "empty") and not (kb / "lance").exists() and not (tmp_path / "report").exists()


@pytest.mark.parametrize("error", [ValueError("bad value\n  at line 3\n\nof the input"), RecursionError(),
                                   InputError("first line\nsecond line of a library's message"),
                                   ConfigError("x" * 5000)], ids=["value-error", "recursion", "input", "wall"])
def test_every_error_is_one_line_on_stderr_and_debug_has_the_rest(tmp_path, monkeypatch, capsys, error):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_DEBUG", "0")  # off, and restored after the --debug run below sets it

    def fails(*args, **kwargs):  # an error from deep inside, of a kind no check foresaw
        raise error

    monkeypatch.setattr("ragtune.config.load_settings", fails)
    code, out, err = run_main(monkeypatch, capsys, "config")
    line = one_line(err.strip())
    assert code == 1 and out == "" and line.startswith("error: ") and len(line) <= 1100
    if not isinstance(error, (InputError, ConfigError)):
        assert f"unexpected {type(error).__name__}" in line and "--debug" in line
    code, _, err = run_main(monkeypatch, capsys, "--debug", "config")
    assert code == 1 and "Traceback (most recent call last):" in err
