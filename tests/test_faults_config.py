"""Fault suite, configuration and CLI: broken ragtune.toml, bad environment values, bad --set keys and values,
and the error line itself (one line; the traceback and its cause only with --debug / RAGTUNE_DEBUG=1)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from _faults_util import assert_kept, make_kb, one_line, snapshot
from ragtune.cli.main import _register, app, main
from ragtune.config import load_settings
from ragtune.errors import ConfigError


def invoke(*args: str):
    _register()
    return CliRunner().invoke(app, list(args))


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The real entry point (`ragtune ...`), in process: exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["ragtune", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("[retrieval\nk = 3\n", "not valid TOML"),
    ("[retrieval]\nk = \"many\"\n", "setting 'retrieval.k' = 'many': Input should be a valid integer"),
    ("[retrieval]\nkk = 3\n", "setting 'retrieval.kk' = 3: unknown setting"),
    ("[retreival]\nk = 3\n", "setting 'retreival': unknown setting"),
    ("retrieval = 3\n", "setting 'retrieval' = 3: Input should be a valid dictionary"),
], ids=["syntax", "wrong-type", "unknown-key", "unknown-section", "section-not-a-table"])
def test_broken_ragtune_toml_is_one_line_naming_it(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragtune.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = one_line(str(info.value))
    assert expected in message
    if "TOML" in expected:
        assert str(tmp_path / "ragtune.toml") in message and "fix the file" in message


def test_broken_kb_toml_stops_search_and_changes_nothing(tmp_path, monkeypatch):
    kb = make_kb(tmp_path)
    before = snapshot(kb.path)
    (kb.path / "ragtune.toml").write_text("[retrieval]\nmode = \"semantic\"\n")
    result = invoke("search", "zephyr", "--kb", str(kb.path))
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    assert "setting 'retrieval.mode' = 'semantic'" in one_line(str(result.exception))
    (kb.path / "ragtune.toml").unlink()
    assert_kept(kb.path, before)


@pytest.mark.parametrize("name, value, expected", [
    ("RAGTUNE_RETRIEVAL__K", "abc", "setting 'retrieval.k' = 'abc'"),
    ("RAGTUNE_GENERATOR__TEMPERATURE", "hot", "setting 'generator.temperature' = 'hot'"),
    ("RAGTUNE_NOPE__K", "1", "setting 'nope': unknown setting"),
])
def test_bad_environment_value_is_one_line_naming_the_field(monkeypatch, tmp_path, name, value, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expected in one_line(str(info.value))


@pytest.mark.parametrize("command", [["config"], ["eval", "qa.jsonl"]])
@pytest.mark.parametrize("assignment, expected", [
    ("retrieval.kk=8", "setting 'retrieval.kk' = '8': unknown setting"),
    ("retrieval.mode=semantic", "setting 'retrieval.mode' = 'semantic': Input should be 'hybrid'"),
    ("retrieval.mode", "expected KEY=VALUE"),
    ("retrieval.mode.x=1", "setting 'retrieval.mode'"),
    ("retrieval.k=many", "setting 'retrieval.k' = 'many'"),
])
def test_bad_set_keys_and_values_are_refused_before_any_work(tmp_path, monkeypatch, command, assignment, expected):
    monkeypatch.chdir(tmp_path)
    result = invoke(*command, "--set", assignment)
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError), result.output
    assert expected in one_line(str(result.exception))
    assert not (tmp_path / "report").exists()  # eval stopped before writing anything


def test_config_save_with_a_bad_value_leaves_the_toml_as_it_was(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ragtune.toml").write_text("[retrieval]\nk = 7\n")
    result = invoke("config", "--kb", str(kb), "--set", "retrieval.k=-", "--save")
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert (kb / "ragtune.toml").read_text() == "[retrieval]\nk = 7\n"


def test_error_is_one_line_without_debug(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGTUNE_DEBUG", raising=False)
    code, err = run_main(monkeypatch, capsys, "config", "--set", "retrieval.k=many")
    assert code == 1
    assert err.strip().splitlines() == ["error: setting 'retrieval.k' = 'many': Input should be a valid integer, "
                                        "unable to parse string as an integer (check ragtune.toml, RAGTUNE_* "
                                        "variables and flags)"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_and_the_hidden_cause(monkeypatch, capsys, tmp_path, how):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_DEBUG", "0")  # restored afterwards: --debug sets it in os.environ
    args = ["config", "--set", "retrieval.k=many"]
    if how == "flag":
        args.insert(0, "--debug")
    else:
        monkeypatch.setenv("RAGTUNE_DEBUG", "1")
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith("error: setting 'retrieval.k' = 'many'")  # the one line still comes first
    assert "Traceback (most recent call last):" in err
    assert "pydantic_core._pydantic_core.ValidationError" in err  # the cause `from None` hid
    assert lines[-1].startswith("ragtune.errors.ConfigError: setting 'retrieval.k'")


def test_an_os_error_outside_the_checked_paths_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGTUNE_DEBUG", raising=False)
    (tmp_path / "a-file").write_text("x")
    code, err = run_main(monkeypatch, capsys, "config", "--kb", "a-file/kb", "--set", "retrieval.k=8", "--save")
    assert code == 1
    line = one_line(err.strip())
    assert line.startswith("error: a-file/kb: Not a directory; check the path") and "--debug" in line
