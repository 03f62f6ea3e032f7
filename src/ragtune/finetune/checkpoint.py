"""Resumable checkpoints, written atomically and read without unpickling anything.

A checkpoint is a folder ``checkpoints/step-N`` holding:
  trainable.safetensors    the trainable weights (the LoRA adapter, or every weight for full fine-tuning)
  optimizer.safetensors    optimizer tensors (Adam moments, step counts), flattened as ``<param>.<key>``
  rng-<rank>.safetensors   each process's torch RNG state
  state.json               loop position (step), best validation loss, patience count, history,
                           optimizer param groups, scheduler state, python/numpy RNG states, run fingerprint
Everything is written into a temporary folder first and renamed into place, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one. Tensors go through
safetensors and the rest through JSON: resuming never executes pickled code, even from a copied folder.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ragtune.errors import CheckpointMismatch, InputError

STEP_DIR = re.compile(r"^step-(\d+)$")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights the optimizer changes, by name (contiguous CPU copies, as safetensors requires)."""
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    wrong = [n for n in tensors if n in params and tensors[n].shape != params[n].shape]
    if missing or wrong:
        raise InputError(f"{where}: its weights ({(missing or wrong)[0]}, ...) do not fit this model (another base "
                         "model or method?); resume with the same settings or choose another --out")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = optimizer.state_dict()
    tensors = {}
    for idx, slot in sd["state"].items():
        for key, value in slot.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{idx}.{key}"] = t.detach().to("cpu").contiguous().clone()
    return tensors, sd["param_groups"]


def _optimizer_from(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = t
    return {"state": state, "param_groups": groups}


def _py_rng() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}  # type: ignore[index]  # the legacy tuple


def _set_py_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def read_state(folder: Path) -> dict[str, Any]:
    """A checkpoint's state.json, or an InputError naming it (a damaged checkpoint is not a traceback)."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{folder}: unreadable checkpoint ({e}); delete that folder to resume from an "
                         "earlier one") from None
    if not isinstance(state, dict):
        raise InputError(f"{folder}: unreadable checkpoint (state.json is not an object); delete that folder")
    return state


def latest(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint folder (temporary folders of a killed save are ignored)."""
    if not checkpoints.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in checkpoints.iterdir() if (m := STEP_DIR.match(p.name))
             and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def save(checkpoints: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], accelerator,
         keep: int, extra_files: dict[str, Path] | None = None) -> None:
    """Write checkpoint ``step-<step>`` atomically from every process (each adds its own RNG state);
    ``extra_files`` (name → existing file, e.g. the best weights so far) are copied in."""
    tmp = checkpoints / f".tmp-step-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_file({"torch": torch.get_rng_state()}, str(tmp / f"rng-{accelerator.process_index}.safetensors"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
        opt_tensors, groups = _optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        for name, src in (extra_files or {}).items():
            if src.is_file():
                shutil.copyfile(src, tmp / name)
        full = dict(state, step=step, optimizer_groups=groups, scheduler=scheduler.state_dict(),
                    rng=_py_rng(), world_size=accelerator.num_processes)
        (tmp / "state.json").write_text(json.dumps(full, indent=1))
        final = checkpoints / f"step-{step}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _prune(checkpoints, keep)
    accelerator.wait_for_everyone()


def _prune(checkpoints: Path, keep: int) -> None:
    steps = sorted((int(m.group(1)), p) for p in checkpoints.iterdir() if (m := STEP_DIR.match(p.name)))
    for _, old in steps[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def restore(folder: Path, model, optimizer, scheduler, accelerator, fingerprint: str | None = None) -> dict[str, Any]:
    """Put weights, optimizer, scheduler and RNG back as they were at the checkpoint; returns the loop state.

    With ``fingerprint``, a checkpoint of another run (other data or settings) is refused before anything
    is loaded into the model."""
    state = read_state(folder)
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise CheckpointMismatch(f"{folder}: was made with other data or settings; resume with the same ones "
                                 "or choose another --out")
    load_trainable(accelerator.unwrap_model(model), load_file(str(folder / "trainable.safetensors")), str(folder))
    optimizer.load_state_dict(_optimizer_from(load_file(str(folder / "optimizer.safetensors")),
                                              state["optimizer_groups"]))
    scheduler.load_state_dict(state["scheduler"])
    _set_py_rng(state["rng"])
    rng_file = folder / f"rng-{accelerator.process_index}.safetensors"
    if rng_file.is_file() and state.get("world_size") == accelerator.num_processes:
        torch.set_rng_state(load_file(str(rng_file))["torch"])
    else:  # resumed with another process count: the data order is kept, dropout masks are re-seeded
        torch.manual_seed(state["step"] * 1000 + accelerator.process_index)
    return state
