"""What goes beside an exported model: the model card (README.md) and an Ollama Modelfile.

The Modelfile's TEMPLATE is read off the model's own chat template: the template is rendered with marker
messages, and the text around each marker is what Ollama's Go template writes around a message of that role.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ragtune.models.prompts import CLOSED_BOOK_SYSTEM, RAG_SYSTEM
from ragtune.winner import Winner

# licences of the packaged aliases, from their model cards
KNOWN_LICENCES = {"smollm2": "Apache-2.0 (SmolLM2, Hugging Face)",
                  "gemma3-270m": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"}
_MARK = {"system": "\x00SYSTEM\x00", "user": "\x00USER\x00", "assistant": "\x00ASSISTANT\x00", "user2": "\x00USER2\x00"}


def system_prompt(winner: Winner) -> str:
    """The system prompt ragtune puts first for this contestant (RAG's rules, or the closed-book one)."""
    default = RAG_SYSTEM if winner.retrieves else CLOSED_BOOK_SYSTEM
    if winner.instruction and winner.instruction.strip():
        return f"{winner.instruction.strip()}\n{RAG_SYSTEM}" if winner.retrieves else winner.instruction.strip()
    return default


def template_parts(tokenizer: Any) -> dict[str, str]:
    """The text the chat template writes before and after a message of each role, and before a reply."""
    def render(roles: list[str], generation: bool) -> str:
        messages = [{"role": "user" if r == "user2" else r, "content": _MARK[r]} for r in roles]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    a = render(["system", "user"], False)
    b = render(["system", "user", "assistant"], False)
    c = render(["system", "user"], True)
    d = render(["system", "user", "assistant", "user2"], False)
    S, U, A, U2 = _MARK["system"], _MARK["user"], _MARK["assistant"], _MARK["user2"]
    user_suffix = a.split(U, 1)[1]
    assistant_suffix = b.split(A, 1)[1]
    user_prefix = _between(d, A, U2)[len(assistant_suffix):]
    parts = {"system_prefix": a.split(S, 1)[0], "system_suffix": _between(a, S, U)[:-len(user_prefix) or None],
             "user_prefix": user_prefix, "user_suffix": user_suffix,
             "assistant_prefix": _between(b, U, A)[len(user_suffix):], "assistant_suffix": assistant_suffix,
             "generation": c[len(a):]}
    if render_parts(parts, [(r, _MARK[r]) for r in ("system", "user")]) != c:
        raise ValueError("the chat template does not split into per-role prefixes and suffixes")
    return parts


def render_parts(parts: dict[str, str], messages: list[tuple[str, str]]) -> str:
    """A prompt from the parts, as the Modelfile's TEMPLATE builds it (for checking them against the template)."""
    out = []
    for i, (role, content) in enumerate(messages):
        role = "user" if role == "user2" else role
        out.append(parts[f"{role}_prefix"] + content + parts[f"{role}_suffix"])
    return "".join(out) + parts["generation"]


def modelfile(gguf_name: str, tokenizer: Any, winner: Winner, stop: list[str]) -> str:
    """An Ollama Modelfile: FROM the GGUF, the chat template as a Go TEMPLATE, greedy decoding, the stop texts
    and ragtune's system prompt for this contestant."""
    lines = [f"# Ollama: ollama create {Path(gguf_name).stem} -f Modelfile", f"FROM ./{gguf_name}"]
    try:
        p = template_parts(tokenizer)
        go = ("{{- range .Messages }}"
              + "".join(f'{{{{ if eq .Role "{r}" }}}}{_go(p[r + "_prefix"])}{{{{ .Content }}}}{_go(p[r + "_suffix"])}'
                        "{{ end }}" for r in ("system", "user", "assistant"))
              + "{{ end }}" + _go(p["generation"]))
        lines.append(f'TEMPLATE """{go}"""')
        stops = [p["assistant_suffix"].strip()] if p["assistant_suffix"].strip() else []
    except ValueError as e:
        lines.append(f"# no TEMPLATE: {e}; Ollama falls back to the GGUF's own chat template")
        stops = []
    eos = getattr(tokenizer, "eos_token", None)
    for text in dict.fromkeys(stops + ([eos] if eos else []) + list(stop)):
        lines.append(f"PARAMETER stop {json.dumps(text)}")
    lines += ["PARAMETER temperature 0", f'SYSTEM """{system_prompt(winner)}"""']
    return "\n".join(lines) + "\n"


def model_card(winner: Winner, results: dict[str, Any] | None, fmt: str, files: list[str]) -> str:
    """README.md of an export: what it is, the bake-off's table, the training data, the licence, how to run it."""
    lines = [f"# {winner.contestant}: exported by ragtune", ""]
    what = {"base": "the base model, unchanged", "rag": "the base model; it answers from a knowledge base",
            "finetuned": "the base model with the fine-tuned LoRA adapter merged in",
            "finetuned+rag": "the base model with the fine-tuned LoRA adapter merged in; it answers from a "
                             "knowledge base",
            "raft": "the base model with the RAFT adapter merged in (trained on retrieved passages); it answers "
                    "from a knowledge base"}[winner.contestant]
    lines += [f"Contestant **{winner.contestant}** of a `ragtune choose` bake-off: {what}.",
              f"Why this one: {winner.why or 'given as an adapter'}.", "",
              f"- Format: {fmt} ({', '.join(files)})", f"- Base model: `{winner.base_model}`",
              f"- Base model licence: {licence(winner.base_model)}"]
    if results:
        lines += ["", "## The bake-off", "", *bakeoff_table(results)]
        train = (results.get("choose") or {}).get("train_data") or {}
        if train:
            lines += ["", f"Training data: {train.get('origin', 'unknown')}, {train.get('examples', '?')} examples"
                      + (" (synthesised from the documents, not written by people)" if train.get("synthetic") else "")
                      + "; questions of the test set were kept out of it."]
    else:
        lines += ["", "Training data: unknown (exported from an adapter folder, not a choose run)."]
    if winner.retrieves:
        lines += ["", "## Retrieval", "", "This contestant answers from passages retrieved for each question; the "
                  "model alone was measured worse or not at all. Retrieval settings it was measured with:", ""]
        lines += [f"- `{k}` = {json.dumps(v)}" for k, v in winner.settings.items()
                  if k.startswith(("retrieval.", "rag."))]
        lines += ["", "Serve it with the knowledge base: run this model on an OpenAI-compatible server (Ollama, vLLM), "
                  "then let ragtune retrieve and prompt it:", "", "```bash",
                  "ollama create winner -f Modelfile     # or: vllm serve ./ --served-model-name winner",
                  "RAGTUNE_GENERATOR__BACKEND=openai RAGTUNE_GENERATOR__MODEL=winner \\",
                  "RAGTUNE_GENERATOR__BASE_URL=http://localhost:11434/v1 \\",
                  f"  ragtune serve --kb {winner.kb_path or 'KB'}", "```", "",
                  "(vLLM's default base URL is http://localhost:8000/v1; run ragtune on another --port.)"]
    lines += ["", f"Answer settings: {', '.join(f'{k}={json.dumps(v)}' for k, v in winner.settings.items() if k.startswith('generator.'))}"]
    return "\n".join(lines) + "\n"


def bakeoff_table(results: dict[str, Any]) -> list[str]:
    """The contestants' headline scores (with their 95% CI) and latency, as a Markdown table."""
    metric = results.get("headline") or (results.get("qa") or {}).get("metric", "score")
    n = (results.get("qa") or {}).get("n", "?")
    rows = [f"| contestant | {metric} (95% CI) | p50 latency |", "|---|---|---|"]
    for name, v in (results.get("variants") or {}).items():
        ci = (v.get("ci") or {}).get("score")
        score = f"{v.get('score', 0):.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        p50 = (v.get("latency_s") or {}).get("p50")
        rows.append(f"| {name} | {score} | {f'{p50:.2f} s' if p50 is not None else '–'} |")
    verdict = (results.get("advice") or {}).get("recommendation")
    return rows + ["", f"{n} held-out test questions; verdict: {verdict}."]


def licence(base_model: str) -> str:
    """The base model's licence: known for the packaged aliases, else a folder's model card front matter or
    LICENSE file; "unknown" otherwise."""
    if base_model.lower() in KNOWN_LICENCES:
        return KNOWN_LICENCES[base_model.lower()]
    folder = Path(base_model)
    card = folder / "README.md"
    if card.is_file():
        found = re.search(r"^license:\s*(\S+)", card.read_text(encoding="utf-8", errors="replace"), re.M)
        if found:
            return found.group(1)
    if (folder / "LICENSE").is_file():
        return f"see {folder / 'LICENSE'}"
    return "unknown (check the base model's own card before publishing)"


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def _go(text: str) -> str:
    """Literal text in a Go template ("{{" would open an action)."""
    return text.replace("{{", '{{ "{{" }}')
