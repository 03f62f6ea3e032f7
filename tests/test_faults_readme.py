"""The README's Reliability table stays true: every test it names exists (and each parameter it names), in any
tests/test_*.py file."""

from __future__ import annotations

import re

from _faults_util import REPO


def named_tests() -> list[tuple[str, str, str | None]]:
    """(file, test, parameter or None) for every test named in the table; shorthand resolved as written:
    ``…[p]`` / ``[p]`` = the previous test with parameter p, ``::name`` = a test in the previous file."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line.rsplit("|", 2)[-2]]
    out: list[tuple[str, str, str | None]] = []
    file = test = ""
    for row in rows:
        for ref in re.findall(r"`([^`]+)`", row.rsplit("|", 2)[-2]):
            m = re.fullmatch(r"(?:(test_\w+\.py))?(?:::(\w+))?(?:…)?(?:\[([^\]]+)\])?", ref)
            assert m and any(m.groups()), f"cannot read {ref!r} in the Reliability table"
            file, test = m.group(1) or file, m.group(2) or test
            out.append((file, test, m.group(3)))
    return out


def test_every_test_in_the_reliability_table_exists():
    named = named_tests()
    assert len({(f, t) for f, t, _ in named}) >= 45
    for file, test, param in named:
        source = (REPO / "tests" / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {test}\(", source, re.M), f"{file}::{test} is in the README but not in the file"
        if param:
            assert f'"{param}"' in source, f"{file}::{test}[{param}]: no such parameter"
