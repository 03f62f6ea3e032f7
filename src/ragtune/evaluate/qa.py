"""QA sets: the questions an evaluation asks, their gold answers, and (for folder formats) the documents of the KB.

Three formats, picked by `load_qa(path)`:
- ragtune JSONL: one object a line, ``{"question", "answers": [...], "gold_sources"?: [...], "is_impossible"?: bool}``
- SQuAD-style folder: ``articles.jsonl`` ({title, paragraphs}) + ``qa.jsonl`` ({id, title, paragraph_index,
  question, answers, is_impossible}); one KB document per paragraph, source ``<title>#<paragraph_index>``
- APIBench-style folder: ``api_docs.jsonl`` (one KB document per API record) + ``eval.jsonl`` (instruction → api_call),
  scored with the API-match metric
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ragtune.errors import InputError
from ragtune.types import Document


@dataclass
class QAItem:
    id: str
    question: str
    answers: list[str]
    gold_sources: list[str] = field(default_factory=list)
    is_impossible: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class QASet:
    name: str
    items: list[QAItem]
    documents: list[Document] = field(default_factory=list)  # empty: the KB is given separately
    metric: str = "squad"  # "squad" (EM/F1/ROUGE-L) or "api" (API match)
    system: str | None = None  # the task's instruction for closed-book prompts (what a fine-tuned model saw)

    def split(self, name: str | None) -> "QASet":
        """Only the items of one split (e.g. "test" of APIBench); all when name is None."""
        if name is None:
            return self
        items = [it for it in self.items if it.metadata.get("split") == name]
        if not items:
            raise InputError(f"QA set '{self.name}' has no items in split '{name}'")
        return QASet(self.name, items, self.documents, self.metric, self.system)

    def subset(self, n: int | None, seed: int = 0) -> "QASet":
        """The first n items of a seeded shuffle (all when n is None)."""
        if n is None or n >= len(self.items):
            return self
        items = list(self.items)
        random.Random(seed).shuffle(items)
        return QASet(self.name, items[:n], self.documents, self.metric, self.system)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise InputError(f"{path}: file not found; give a QA JSONL file or a SQuAD/APIBench-style folder")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{n}: expected a JSON object per line")
            yield n, row


def load_jsonl(path: str | Path) -> QASet:
    """ragtune JSONL: question, answers (list), optional gold_sources (list), is_impossible (bool), id."""
    path = Path(path)
    items = []
    for n, row in _read_jsonl(path):
        question, answers = row.get("question"), row.get("answers", row.get("answer"))
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{path}:{n}: field 'question' must be a non-empty string")
        if isinstance(answers, str):
            answers = [answers]
        impossible = bool(row.get("is_impossible", False))
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers) or (not answers and not impossible):
            raise InputError(f"{path}:{n}: field 'answers' must be a non-empty list of strings "
                             "(or [] with is_impossible: true)")
        gold = row.get("gold_sources", [])
        if isinstance(gold, str):
            gold = [gold]
        items.append(QAItem(str(row.get("id", n)), question.strip(), answers, list(gold), impossible))
    if not items:
        raise InputError(f"{path}: no questions found")
    return QASet(path.stem, items)


def squad_documents(articles: Path) -> list[Document]:
    return [Document(source=f"{row['title']}#{i}", text=p, metadata={"title": row["title"], "paragraph_index": i})
            for _, row in _read_jsonl(articles) for i, p in enumerate(row["paragraphs"])]


def load_squad(folder: str | Path) -> QASet:
    """SQuAD-style folder; each question's gold source is its paragraph ``<title>#<paragraph_index>``."""
    folder = Path(folder)
    items = [QAItem(str(r["id"]), r["question"], list(r.get("answers", [])),
                    [f"{r['title']}#{r['paragraph_index']}"], bool(r.get("is_impossible", False)),
                    {"title": r["title"]}) for _, r in _read_jsonl(folder / "qa.jsonl")]
    return QASet(folder.name, items, squad_documents(folder / "articles.jsonl"), "squad")


_INSTRUCTION = re.compile(r"###\s*Instruction:\s*(.*?)\s*(?:###\s*Output:|$)", re.DOTALL)


def api_doc_source(record: dict) -> str:
    """A TF Hub API record's source name: its model URL (unique per record, unlike api_name)."""
    from ragtune.evaluate.metrics import api_urls

    urls = api_urls(record.get("api_call", ""))
    return urls[0] if urls else str(record.get("api_name", ""))


def api_doc_text(record: dict) -> str:
    keys = ("domain", "functionality", "api_name", "api_call", "api_arguments", "description", "example_code")
    return "\n".join(f"{k}: {record[k]}" for k in keys if record.get(k))


def load_apibench(folder: str | Path) -> QASet:
    """APIBench-style folder: the instruction is the question, the gold api_call the answer."""
    folder = Path(folder)
    docs: dict[str, Document] = {}
    by_url: dict[str, list[str]] = {}  # several records describe the same model URL; each is a document
    for _, rec in _read_jsonl(folder / "api_docs.jsonl"):
        url, text = api_doc_source(rec), api_doc_text(rec)
        if any(docs[s].text == text for s in by_url.get(url, [])):
            continue  # an exact duplicate record
        source = url if url not in by_url else f"{url}#{len(by_url[url]) + 1}"
        by_url.setdefault(url, []).append(source)
        docs[source] = Document(source, text, {"api_name": rec.get("api_name", ""), "url": url})
    items = []
    for n, row in _read_jsonl(folder / "eval.jsonl"):
        m = _INSTRUCTION.search(row.get("code", ""))
        if not m or not row.get("api_call"):
            raise InputError(f"{folder / 'eval.jsonl'}:{n}: needs 'code' with '###Instruction:' and 'api_call'")
        url = api_doc_source(row.get("api_data") or {"api_call": row["api_call"]})
        items.append(QAItem(f"api-{n}", m.group(1).strip(), [row["api_call"]], by_url.get(url, [url]),
                            metadata={"line": n}))
    # the fine-tuning split (seeded 80/10/10 of eval.jsonl), so the test split is never trained on
    from ragtune.finetune.apibench import SYSTEM
    from ragtune.finetune.apibench import load_apibench as finetune_splits

    split_of = {ex.line: name for name, exs in finetune_splits(folder).items() for ex in exs}
    for item in items:
        item.metadata["split"] = split_of.get(item.metadata["line"])
    return QASet(folder.name, items, list(docs.values()), "api", SYSTEM)


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "articles.jsonl").is_file() and (path / "qa.jsonl").is_file():
            return "squad"
        if (path / "api_docs.jsonl").is_file() and (path / "eval.jsonl").is_file():
            return "apibench"
        raise InputError(f"{path}: folder is neither SQuAD-style (articles.jsonl + qa.jsonl) "
                         "nor APIBench-style (api_docs.jsonl + eval.jsonl)")
    return "jsonl"


def load_qa(path: str | Path, fmt: str = "auto") -> QASet:
    """Load a QA set in any supported format ("auto" detects it from the path)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; give a QA JSONL file or a SQuAD/APIBench-style folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    loaders = {"jsonl": load_jsonl, "squad": load_squad, "apibench": load_apibench}
    if fmt not in loaders:
        raise InputError(f"QA format '{fmt}' is unknown; use one of auto, {', '.join(loaders)}")
    return loaders[fmt](path)


def split_ids(qa: QASet, train: str | Path | None) -> set[str]:
    """Ids of the items whose question appears in a training file (questions compared normalised)."""
    if train is None:
        return set()
    from ragtune.evaluate.metrics import normalize

    seen = set()
    for _, row in _read_jsonl(Path(train)):
        text = row.get("question") or row.get("prompt") or row.get("instruction") or ""
        if not text and isinstance(row.get("messages"), list):
            text = next((m.get("content", "") for m in row["messages"] if m.get("role") == "user"), "")
        m = _INSTRUCTION.search(text)
        seen.add(normalize(m.group(1) if m else text))
    return {it.id for it in qa.items if normalize(it.question) in seen}
