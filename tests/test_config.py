import pytest

from ragtune.config import load_settings, parse_assignments
from ragtune.errors import ConfigError


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.retrieval.mode == "hybrid"
    assert s.generator.model == "smollm2"


def test_precedence_file_then_kb_then_env_then_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragtune.toml").write_text("[retrieval]\nk = 3\ncandidates = 7\n[generator]\nmodel = 'a'\n")
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ragtune.toml").write_text("[retrieval]\nk = 4\n")
    assert load_settings(kb).retrieval.k == 4
    assert load_settings(kb).retrieval.candidates == 7
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__K", "9")
    assert load_settings(kb).retrieval.k == 9
    assert load_settings(kb, {"retrieval.k": 11}).retrieval.k == 11
    assert load_settings(kb, {"generator.model": None}).generator.model == "a"


def test_bad_values_name_the_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="retrieval.k"):
        load_settings(overrides={"retrieval.k": "many"})
    with pytest.raises(ConfigError, match="retrieval.nope"):
        load_settings(overrides={"retrieval.nope": 1})
    (tmp_path / "ragtune.toml").write_text("[retrieval\n")
    with pytest.raises(ConfigError, match="ragtune.toml"):
        load_settings()


def test_parse_assignments():
    assert parse_assignments(["retrieval.k=8", "a.b = c=d"]) == {"retrieval.k": "8", "a.b": "c=d"}
    with pytest.raises(ConfigError):
        parse_assignments(["novalue"])
