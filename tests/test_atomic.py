"""The one atomic writer: the old file survives a failed write, and no temporary file is left behind."""

import json

import pytest

from ragtune.atomic import atomic_folder, atomic_open, atomic_write, atomic_write_json


def test_write_replaces_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    atomic_write(path, '{"x": 2}')
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
    assert path.stat().st_mode & 0o644 == 0o644  # readable by others, unlike mkstemp's 0600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(OSError):
        with atomic_open(path) as f:
            f.write(b"half of the new")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "cache" / "model"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("conversion failed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
    with atomic_folder(target) as tmp:  # another process finished first: its copy is kept
        (tmp / "other.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert [p.name for p in target.parent.iterdir()] == ["model"]


def test_folder_replace_swaps_in_the_new_copy_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as tmp:
        (tmp / "old.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, replace=True) as tmp:
            (tmp / "new.json").write_text("{}")
            raise RuntimeError("merge failed")
    assert sorted(p.name for p in target.iterdir()) == ["old.json"]  # a failed replace leaves the old one
    with atomic_folder(target, replace=True) as tmp:
        (tmp / "new.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["new.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temp or old folder left beside it
