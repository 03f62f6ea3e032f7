"""The prompts: retrieved passages numbered [1]..[k] for RAG, a plain question for closed-book.

Kept as plain strings and small functions so evaluation, fine-tuning and serving build exactly the
same messages as `ragtune ask`.
"""

from __future__ import annotations

from typing import Sequence

from ragtune.types import Hit

Message = dict[str, str]

ABSTAIN_TEXT = "I could not find this in the knowledge base."

# Short on purpose: a 135M model follows a few plain sentences better than a page of rules.
RAG_SYSTEM = (
    "Answer the question using only the numbered passages. "
    "Answer briefly, in the passage's own words. "
    "Cite the passage number in square brackets, like [1]. "
    "If the passages do not contain the answer, say: " + ABSTAIN_TEXT
)

CLOSED_BOOK_SYSTEM = "You are a helpful assistant. Answer the question briefly and accurately."

# For base models without a chat template (Gemma 3 270M): plain turns that a base model continues naturally.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n\n"
    "{% else %}Assistant: {{ m['content'] }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def format_passage(n: int, hit: Hit) -> str:
    # No source path in the prompt: small models copy it into the answer. Sources are mapped back from [n].
    return f"[{n}] {hit.text.strip()}"


def rag_messages(question: str, hits: Sequence[Hit]) -> list[Message]:
    """System rules + one user turn holding the passages numbered from 1, then the question."""
    passages = "\n\n".join(format_passage(n, hit) for n, hit in enumerate(hits, start=1))
    user = f"{passages}\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": RAG_SYSTEM}, {"role": "user", "content": user}]


def closed_book_messages(question: str) -> list[Message]:
    """The bare-model variant: no passages, nothing to cite."""
    return [{"role": "system", "content": CLOSED_BOOK_SYSTEM}, {"role": "user", "content": question.strip()}]
