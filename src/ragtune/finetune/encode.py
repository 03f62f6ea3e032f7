"""Examples → token ids and labels, through the model's own chat template.

Only answer tokens carry a label (prompt tokens get -100) so the model learns to answer, not to
repeat questions. The prompt is tokenised exactly as at inference (template with the generation
prompt), and the answer is appended after it, so training and `ragtune ask` see the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragtune.models.loading import ensure_chat_template  # noqa: F401  (one template; re-exported for training)
from ragtune.types import Example

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def answer_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def _render(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_chat(tokenizer, messages: list[dict[str, str]], max_tokens: int, loss_on: str = "answer") -> Encoded:
    """Token ids of a conversation; labels only on assistant turns (or on everything with loss_on='all')."""
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], generation_prompt=True)
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not prefix.startswith(rendered) or not full.startswith(prefix):
            # A template that rewrites earlier turns: fall back to masking by rendered length.
            prefix_ids, answer_ids = _ids(tokenizer, prefix), _ids(tokenizer, full[len(prefix):])
            ids, labels = prefix_ids[:], [IGNORE] * len(prefix_ids)
        else:
            prefix_ids, answer_ids = _ids(tokenizer, prefix[len(rendered):]), _ids(tokenizer, full[len(prefix):])
            ids += prefix_ids
            labels += [IGNORE] * len(prefix_ids)
        ids += answer_ids
        labels += answer_ids
        rendered = full
    if loss_on == "all":
        labels = ids[:]
    truncated = len(ids) > max_tokens
    return Encoded(ids[:max_tokens], labels[:max_tokens], truncated)


def chat_length(tokenizer, messages: list[dict[str, str]]) -> int:
    """Tokens of a whole conversation as training encodes it (template applied, nothing cut)."""
    return len(encode_chat(tokenizer, messages, 10 ** 9).input_ids)


def encode_text(tokenizer, texts: list[str], max_tokens: int) -> list[Encoded]:
    """Raw documents for continued pre-training: concatenated with EOS and cut into full blocks."""
    stream: list[int] = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for t in texts:
        stream += _ids(tokenizer, t) + eos
    blocks = [stream[i:i + max_tokens] for i in range(0, len(stream), max_tokens)]
    return [Encoded(b, b[:]) for b in blocks if len(b) > 1]


def encode_examples(tokenizer, examples: list[Example], max_tokens: int, loss_on: str = "answer"
                    ) -> tuple[list[Encoded], dict[str, int]]:
    """All examples encoded, plus counts of truncated ones and ones left with no answer token."""
    if examples and examples[0].text is not None:
        return encode_text(tokenizer, [e.text or "" for e in examples], max_tokens), {"truncated": 0, "no_answer": 0}
    out, truncated, no_answer = [], 0, 0
    for e in examples:
        enc = encode_chat(tokenizer, e.messages, max_tokens, loss_on)
        truncated += enc.truncated
        if enc.answer_tokens == 0:
            no_answer += 1  # the prompt alone filled max_tokens: counted and reported, nothing to learn
            continue
        out.append(enc)
    return out, {"truncated": truncated, "no_answer": no_answer}
