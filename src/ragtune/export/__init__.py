"""`ragtune export`: a contestant of a bake-off (or any adapter folder) as a standalone model others can serve.

    export("choice", "winner-hf")                             # the recommended contestant, merged HF folder
    export("choice", "winner-gguf", fmt="gguf", outtype="q8_0", contestant="raft")

hf: a merged Hugging Face folder (`hf.write_hf`). gguf: the same model as one GGUF file (`gguf.write_gguf`) with
an Ollama Modelfile. Both carry a model card (README.md). The export is built in a temporary folder beside OUT
and renamed into place when complete (`atomic.atomic_folder`), so a half-written export is never left behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_folder
from ragtune.config import load_settings
from ragtune.errors import InputError
from ragtune.winner import WINNER_FILE, Winner, check_files, read_winner

FORMATS = ("hf", "gguf")


def export(source: str | Path, out: str | Path, *, fmt: str = "hf", contestant: str | None = None,
           outtype: str = "f16", force: bool = False) -> Path:
    """Export ``source`` (a `ragtune choose` folder or an adapter folder) to ``out``; returns ``out``."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: unknown; choose from {', '.join(FORMATS)}")
    from ragtune.export.gguf import OUTTYPES

    if fmt == "gguf" and outtype not in OUTTYPES:  # before the minutes of merging, not after
        raise InputError(f"--outtype {outtype}: unknown; choose from {', '.join(OUTTYPES)}")
    winner, results = resolve(Path(source), contestant)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise InputError(f"--out {out}: exists and is not empty; pick a new folder, or pass --force to replace it")
    settings = load_settings(None, winner.overrides())
    with atomic_folder(out, replace=True) as tmp:
        from ragtune.export.hf import write_hf

        hf_dir = tmp if fmt == "hf" else tmp / "hf"
        model, tokenizer = write_hf(winner.model, hf_dir, settings)
        files = ["model.safetensors", "tokenizer", "chat template", "generation_config.json"]
        if fmt == "gguf":
            from ragtune.export.card import modelfile
            from ragtune.export.gguf import write_gguf

            name = f"{winner.contestant.replace('+', '-')}-{outtype}.gguf"
            write_gguf(model, tokenizer, tmp / name, outtype, name=winner.contestant)
            shutil.rmtree(hf_dir)
            (tmp / "Modelfile").write_text(modelfile(name, tokenizer, winner, settings.generator.stop),
                                           encoding="utf-8")
            files = [name, "Modelfile"]
        from ragtune.export.card import model_card

        (tmp / "README.md").write_text(model_card(winner, results, fmt, files), encoding="utf-8")
        (tmp / "ragtune-export.json").write_text(json.dumps(
            {"contestant": winner.contestant, "format": fmt, "outtype": outtype if fmt == "gguf" else None,
             "base_model": winner.base_model, "retrieves": winner.retrieves, "settings": winner.settings,
             "kb": str(winner.kb_path) if winner.kb_path else None, "instruction": winner.instruction},
            indent=2) + "\n", encoding="utf-8")
    return out


def resolve(source: Path, contestant: str | None) -> tuple[Winner, dict[str, Any] | None]:
    """The contestant to export and the bake-off's results: from a choose folder, or an adapter folder alone."""
    if (source / WINNER_FILE).is_file() or (source / "choose.json").is_file():
        winner = read_winner(source, contestant)
        path = source / "results.json"
        return winner, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if (source / "adapter_config.json").is_file():
        if contestant:
            raise InputError(f"--contestant {contestant}: only for a `ragtune choose` folder; {source} is an adapter")
        from ragtune.models.loading import resolve_model

        base = resolve_model(str(source)).base or ""
        winner = Winner(source.resolve().parent, "finetuned", "", base, source.resolve().name, None,
                        why="exported from its adapter folder")
        check_files(winner)
        return winner, None
    what = "does not exist" if not source.exists() else "is neither a `ragtune choose` output nor an adapter folder"
    raise InputError(f"{source}: {what}; pass the --out folder of `ragtune choose`, or an adapter folder "
                     "written by `ragtune finetune`")

