"""The winner of a bake-off: which contestant `choose` recommends and everything needed to run it.

    write_winner("choice", recommendation="raft", best="raft", tied=[], ...)   # `choose` does this at the end
    w = read_winner("choice")                     # the recommended contestant
    w = read_winner("choice", "finetuned+rag")   # any other of the five
    w.model, w.kb_path, w.overrides()            # what `ask`, `serve` and `export` run

The record is ``DIR/winner.toml`` (a file of its own, so a person can read it and `choose.json` stays the
stages' resume log). Paths in it are relative to DIR, so a choose folder can be moved or copied whole.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_write
from ragtune.config import Settings
from ragtune.errors import InputError

WINNER_FILE = "winner.toml"

# name -> (the model folder it answers with, None for the base model; whether it retrieves). The same five as
# ragtune.evaluate.variants.VARIANTS (a test keeps them equal), listed simplest first: the order that breaks a tie.
CONTESTANTS: dict[str, tuple[str | None, bool]] = {
    "base": (None, False),
    "rag": (None, True),
    "finetuned": ("finetuned", False),
    "finetuned+rag": ("finetuned", True),
    "raft": ("raft", True),
}
# advise's recommendation -> the contestant that runs it
RECOMMENDED = {"base": "base", "rag": "rag", "finetune": "finetuned", "both": "finetuned+rag", "raft": "raft"}
# the settings that shape an answer; recorded so every contestant runs as it was measured (the embedder too: the
# knowledge base refuses another one)
ANSWER_SETTINGS = {"retrieval": None, "rag": None, "embedder": ("backend", "model", "base_url"),
                   "generator": ("max_new_tokens", "temperature", "repeat_ngram", "stop")}
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class Winner:
    """One contestant of a choose folder, ready to run: `model` is what `generator.model` is set to."""

    folder: Path  # the choose folder
    contestant: str  # base | rag | finetuned | finetuned+rag | raft
    recommendation: str  # advise's verdict (rag, finetune, both, raft, base or inconclusive)
    base_model: str  # an alias or an absolute folder / file
    adapter: str | None  # relative to `folder`; None for base and rag
    kb: str | None  # relative to `folder`; None for contestants that do not retrieve
    settings: dict[str, Any] = field(default_factory=dict)  # dotted keys, as measured ("retrieval.k": 3, ...)
    instruction: str | None = None  # the QA set's own system instruction, part of every prompt
    why: str = ""  # why this contestant (the verdict, or how an inconclusive one was broken)
    recommended: bool = True  # False when --contestant picked another

    @property
    def retrieves(self) -> bool:
        return CONTESTANTS[self.contestant][1]

    @property
    def adapter_path(self) -> Path | None:
        return self.folder / self.adapter if self.adapter else None

    @property
    def kb_path(self) -> Path | None:
        return self.folder / self.kb if self.kb else None

    @property
    def model(self) -> str:
        """The generator.model spec: the adapter folder (its config names the base), else the base model."""
        return str(self.adapter_path) if self.adapter_path else self.base_model

    def overrides(self) -> dict[str, Any]:
        """Dotted settings for `load_settings`: the measured answer settings and the model."""
        return {**self.settings, "generator.model": self.model}


def answer_settings(settings: Settings) -> dict[str, Any]:
    """The answer-shaping settings of `settings` as dotted keys (what a winner record keeps)."""
    out: dict[str, Any] = {}
    for section, keys in ANSWER_SETTINGS.items():
        values = getattr(settings, section).model_dump()
        out.update({f"{section}.{k}": v for k, v in values.items() if (keys is None or k in keys) and v is not None})
    return out


def pick(recommendation: str, best: str | None, tied: list[str], trained: list[str]) -> tuple[str, str]:
    """The contestant for a verdict, and why. An inconclusive verdict goes to the simplest of the leaders (the
    best scorer and those the paired bootstrap cannot tell from it): fewer parts to run and keep fresh."""
    available = [c for c in CONTESTANTS if CONTESTANTS[c][0] is None or CONTESTANTS[c][0] in trained]
    if recommendation in RECOMMENDED and RECOMMENDED[recommendation] in available:
        name = RECOMMENDED[recommendation]
        return name, f"recommended: {recommendation}"
    leaders = [c for c in [best, *tied] if c in available] or ["base"]
    name = min(leaders, key=list(CONTESTANTS).index)
    why = (f"the verdict is {recommendation}; {name} is the simplest of the leaders ({', '.join(leaders)}), "
           "which the test questions cannot tell apart: the fewest parts to run and keep fresh")
    return name, why


def write_winner(out_dir: str | Path, *, recommendation: str, best: str | None, tied: list[str],
                 base_model: str, settings: Settings, instruction: str | None = None,
                 kb: str | None = "kb") -> Winner:
    """Record the recommended contestant in ``out_dir/winner.toml`` (atomically) and return it."""
    folder = Path(out_dir)
    trained = [name for name in ("finetuned", "raft") if (folder / name / _ADAPTER_FILES[0]).is_file()]
    contestant, why = pick(recommendation, best, tied, trained)
    model_path = Path(base_model).expanduser()
    base = str(model_path.resolve()) if model_path.exists() else base_model  # a folder named relative to the cwd
    record = {"winner": {"contestant": contestant, "recommendation": recommendation, "why": why,
                         "base_model": base, "kb": kb or "", "instruction": instruction or ""},
              "adapters": {name: name for name in trained},
              "settings": answer_settings(settings)}
    lines = ["# written by `ragtune choose`: the contestant it recommends and how to run it (paths relative to "
             "this folder)", "# run it: ragtune ask \"...\" --choice DIR | ragtune serve --choice DIR | "
             "ragtune export DIR --out OUT"]
    for section, values in record.items():
        lines += ["", f"[{section}]"] + [f"{_key(k)} = {json.dumps(v)}" for k, v in values.items()]
    atomic_write(folder / WINNER_FILE, "\n".join(lines) + "\n")
    return read_winner(folder)


def read_winner(folder: str | Path, contestant: str | None = None) -> Winner:
    """The recommended contestant of a choose folder, or the one named; one-line errors for a folder that is not
    a finished choose output, a contestant that was not trained and adapter files that are gone."""
    folder = Path(folder)
    path = folder / WINNER_FILE
    if not path.is_file():
        if (folder / "choose.json").is_file():
            raise InputError(f"{folder}: `ragtune choose` has not finished there (no {WINNER_FILE}); re-run the "
                             "same choose command to finish it")
        raise InputError(f"{folder}: not a `ragtune choose` output folder (no {WINNER_FILE}); pass the --out "
                         "folder of a finished `ragtune choose` run")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        head, adapters, settings = data["winner"], data.get("adapters", {}), data.get("settings", {})
        recommended, verdict, base_model = head["contestant"], head["recommendation"], head["base_model"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a valid winner record ({e}); re-run `ragtune choose` to rewrite it") from None
    name = _contestant_name(contestant) if contestant else recommended
    model_dir, retrieves = CONTESTANTS[name]
    if model_dir is not None and model_dir not in adapters:
        raise InputError(f"--contestant {name}: not trained in {folder} (trained: "
                         f"{', '.join(adapters) or 'none'}); pick another contestant")
    winner = Winner(folder.resolve(), name, verdict, base_model,
                    adapters[model_dir] if model_dir else None, (head.get("kb") or None) if retrieves else None,
                    dict(settings), head.get("instruction") or None,
                    head.get("why", "") if name == recommended else f"picked with --contestant (recommended: "
                    f"{recommended})", name == recommended)
    check_files(winner)
    return winner


def check_files(winner: Winner) -> None:
    """The adapter (and any adapter it was trained from, e.g. RAFT's ../finetuned) and the kb are still there."""
    adapter = winner.adapter_path
    while adapter is not None:
        missing = [f for f in _ADAPTER_FILES if not (adapter / f).is_file()]
        if missing:
            raise InputError(f"{adapter}: adapter files deleted ({', '.join(missing)} missing); restore the "
                             "folder from a copy, pick another --contestant, or run `ragtune choose` into a new --out")
        base = json.loads((adapter / _ADAPTER_FILES[0]).read_text(encoding="utf-8")).get("base_model_name_or_path")
        nxt = (adapter / base).resolve() if isinstance(base, str) and base.startswith(".") else None
        adapter = nxt if nxt is not None and nxt.is_relative_to(winner.folder) else None
    kb = winner.kb_path
    if kb is not None and not kb.is_dir():
        raise InputError(f"{kb}: the knowledge base of {winner.folder} is gone; restore it from a copy, or run "
                         "`ragtune choose` into a new --out")


def _key(key: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise ("retrieval.k" is one key, not a table)."""
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _contestant_name(name: str) -> str:
    key = name.strip().lower().replace("_", "+").replace("-", "+").replace(" ", "+")
    if key not in CONTESTANTS:
        raise InputError(f"--contestant {name}: unknown; choose from {', '.join(CONTESTANTS)}")
    return key


def run_commands(folder: str | Path) -> list[str]:
    """The exact commands that ask, serve and export the winner of a choose folder."""
    where = shlex.quote(str(folder))
    return [f'ragtune ask "your question" --choice {where}', f"ragtune serve --choice {where}",
            f"ragtune export {where} --out {shlex.quote(str(Path(folder).resolve().name) + '-export')}"]


def from_choice(choice: str | Path | None, contestant: str | None, **given: Any) -> Winner | None:
    """The contestant a command's ``--choice DIR [--contestant NAME]`` names, or None without --choice. ``given``:
    flags that --choice decides itself (``kb``, ``model``, ``finetuned``), refused when set alongside it."""
    if choice is None:
        if contestant:
            raise InputError(f"--contestant {contestant}: needs --choice DIR (a `ragtune choose` output folder)")
        return None
    clash = [f"--{name}" for name, value in given.items() if value is not None]
    if clash:
        raise InputError(f"--choice {choice}: runs the model and knowledge base `choose` measured; drop "
                         f"{', '.join(clash)}")
    return read_winner(choice, contestant)
