"""QA sets: the questions an evaluation asks, their gold answers, and (for folder formats) the documents of the KB.

Three formats, picked by `load_qa(path)`:
- ragtune JSONL: one object a line, ``{"question", "answers": [...], "gold_sources"?: [...], "is_impossible"?: bool,
  "choices"?: [...], "metric"?: name}``; scored with the metric the rows name, else the inferred one
- SQuAD-style folder: ``articles.jsonl`` ({title, paragraphs}) + ``qa.jsonl`` ({id, title, paragraph_index,
  question, answers, is_impossible}); one KB document per paragraph, source ``<title>#<paragraph_index>``; ``f1``
- APIBench-style folder (any hub): ``api_docs.jsonl`` (one KB document per API record) + ``eval.jsonl``
  (instruction → api_call), scored with the ``call`` metric
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ragtune.errors import InputError
from ragtune.evaluate.scorers import get_metric, infer_metric
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
    metric: str = "f1"  # a name of evaluate.scorers.get_metric: how answers are scored
    system: str | None = None  # the task's instruction for closed-book prompts (what a fine-tuned model saw)
    metric_reason: str = ""  # why that metric: declared by the file, the folder format, --metric, or inferred
    skipped: list[dict[str, Any]] = field(default_factory=list)  # bad lines left out: {line, reason}
    lines: int = 0  # rows read from the file, skipped ones included (0: built in code); the 20% rule counts these

    def split(self, name: str | None) -> QASet:
        """Only the items of one split (e.g. "test" of APIBench); all when name is None."""
        if name is None:
            return self
        items = [it for it in self.items if it.metadata.get("split") == name]
        if not items:
            raise InputError(f"QA set '{self.name}' has no items in split '{name}'")
        return replace(self, items=items)

    def subset(self, n: int | None, seed: int = 0) -> QASet:
        """The first n items of a seeded shuffle (all when n is None)."""
        if n is None or n >= len(self.items):
            return self
        items = list(self.items)
        random.Random(seed).shuffle(items)
        return replace(self, items=items[:n])


def read_jsonl(path: Path, skipped: list[dict[str, Any]] | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line. A line that is not a JSON object is an error, or, with
    ``skipped``, recorded there as ``{line, reason}`` and left out. A file that is not UTF-8 is one error."""
    if not path.is_file():
        raise InputError(f"{path}: file not found; give a QA JSONL file or a SQuAD/APIBench-style folder")
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    problem = None if isinstance(row, dict) else "expected a JSON object per line"
                except json.JSONDecodeError as e:
                    problem = f"not valid JSON ({e.msg}); fix or remove the line"
                if problem is None:
                    yield n, row
                elif skipped is None:
                    raise InputError(f"{path}:{n}: {problem}")
                else:
                    skipped.append({"line": n, "reason": problem})
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text ({_first_bad_byte(path)}); re-save it as UTF-8") from None


def _first_bad_byte(path: Path) -> str:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        return "undecodable"
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"byte 0x{raw[e.start]:02x} on line {line}"


def _row_problem(row: dict) -> str | None:
    """What makes a QA row unusable (a wrong type, a blank question), or None."""
    question, answers = row.get("question"), row.get("answers", row.get("answer"))
    if not isinstance(question, str) or not question.strip():
        return "field 'question' must be a non-empty string"
    impossible = row.get("is_impossible", False)
    if not isinstance(impossible, bool):
        return f"field 'is_impossible' must be true or false (a JSON boolean), not {impossible!r}"
    if isinstance(answers, str):
        answers = [answers]
    if answers is None and impossible:  # an unanswerable question needs no answers field (an empty CSV cell)
        answers = []
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers) or (not answers and not impossible):
        return "field 'answers' must be a non-empty list of strings (or [] with is_impossible: true)"
    gold = row.get("gold_sources", [])
    if not isinstance(gold, (str, list)) or (isinstance(gold, list) and not all(isinstance(g, str) for g in gold)):
        return f"field 'gold_sources' must be a list of strings (source names), not {json.dumps(gold)[:60]}"
    return None


def skipped_lines(qa: QASet, limit: int = 10) -> list[str]:
    """The console's note on the lines left out: a count, then one line each (the first ``limit``)."""
    if not qa.skipped:
        return []
    total = qa.lines or len(qa.items) + len(qa.skipped)
    more = [f"  ... and {len(qa.skipped) - limit} more (results.json qa.skipped)"] if len(qa.skipped) > limit else []
    return ([f"{qa.name}: {len(qa.skipped)} of {total} lines skipped (not scored; --strict refuses them):"]
            + [f"  line {s['line']}: {s['reason']}" for s in qa.skipped[:limit]] + more)


_LETTERS = "ABCDEFGHIJ"


def _with_choices(path: Path, n: int, question: str, answers: list[str], choices: Any) -> tuple[str, list[str]]:
    """A multiple-choice row: the options lettered A, B, ... after the question; a gold option text also
    counts by its letter."""
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(_LETTERS) or \
            not all(isinstance(c, str) for c in choices):
        raise InputError(f"{path}:{n}: field 'choices' must be a list of 2 to {len(_LETTERS)} strings")
    question += "".join(f"\n{letter}. {text}" for letter, text in zip(_LETTERS, choices))
    letters = [_LETTERS[choices.index(a)] for a in answers if a in choices]
    return question, answers + [x for x in letters if x not in answers]


def _declared_metric(path: Path, rows: list[tuple[int, dict]]) -> tuple[str, str] | None:
    """The metric the rows name (one per file), checked; None when no row names one."""
    declared: dict[str, int] = {}
    for n, row in rows:
        if "metric" in row:
            if not isinstance(row["metric"], str) or not row["metric"].strip():
                raise InputError(f"{path}:{n}: field 'metric' must be a metric name")
            declared.setdefault(row["metric"].strip(), n)
    if len(declared) > 1:
        (a, line_a), (b, line_b) = list(declared.items())[:2]
        raise InputError(f"{path}:{line_b}: metric '{b}' differs from '{a}' on line {line_a}; one metric per QA "
                         "file (or pass --metric)")
    if not declared:
        return None
    name, line = next(iter(declared.items()))
    try:
        get_metric(name)
    except InputError as e:
        raise InputError(f"{path}:{line}: field 'metric': {e}") from None
    return name, f"declared on line {line} of {path.name}"


def _rows(path: Path, skipped: list[dict[str, Any]], fields: dict[str, str] | None) -> list[tuple[int, dict]]:
    """The rows of a JSON Lines, CSV or Parquet file or a datasets folder, columns mapped (``fields``). CSV
    cells are text: there ``true``/``false`` are booleans. A Hugging Face SQuAD row's ``answers`` (``{text:
    [...]}``) is its list of texts (`map_fields`)."""
    from ragtune.finetune.tables import is_table, map_fields, read_csv, read_table

    csv = path.suffix.lower() == ".csv"
    found = read_table(path) if is_table(path) else read_csv(path) if csv else read_jsonl(path, skipped)
    rows = []
    for n, raw in found:
        row = map_fields(raw, fields)
        column = (fields or {}).get("answer")
        if column is not None and column != "answers" and column in raw:
            row.pop("answers", None)  # the mapped column is the answer, not another one of that name
        if csv and str(row.get("is_impossible", "")).lower() in ("true", "false", "1", "0"):
            row["is_impossible"] = str(row["is_impossible"]).lower() in ("true", "1")
        rows.append((n, row))
    return rows


def load_jsonl(path: str | Path, fields: dict[str, str] | None = None) -> QASet:
    """Rows of questions: JSON Lines (or CSV, Parquet, a datasets folder): question, answers (list), optional
    gold_sources (list), is_impossible (bool), id, split (train / validation / test), choices (list: multiple
    choice), metric (a metric name, the same on every row that has one). ``fields`` maps other column names,
    e.g. ``{"question": "query", "answer": "gold"}``."""
    path = Path(path)
    items: list[QAItem] = []
    skipped: list[dict[str, Any]] = []
    rows = _rows(path, skipped, fields)
    for n, row in rows:
        problem = _row_problem(row)
        if problem is not None:
            skipped.append({"line": n, "reason": problem})
            continue
        given = row.get("answers", row.get("answer"))
        answers: list[str] = [given] if isinstance(given, str) else list(given or [])
        gold = row.get("gold_sources", [])
        question = row["question"].strip()
        if "choices" in row:
            try:
                question, answers = _with_choices(path, n, question, answers, row["choices"])
            except InputError as e:
                skipped.append({"line": n, "reason": str(e).split(": ", 1)[1]})
                continue
        split = row.get("split") if isinstance(row.get("split"), str) else None
        items.append(QAItem(str(row.get("id", n)), question, answers, [gold] if isinstance(gold, str) else gold,
                            row.get("is_impossible", False), {"line": n, **({"split": split} if split else {})}))
    if not items and skipped:
        more = f" (and {len(skipped) - 1} more bad lines: no usable question)" if len(skipped) > 1 else ""
        raise InputError(f"{path}:{skipped[0]['line']}: {skipped[0]['reason']}{more}")
    if not items:
        raise InputError(f"{path}: no questions found")
    metric, reason = _declared_metric(path, rows) or infer_metric([it.answers for it in items],
                                                                  choices=any("choices" in r for _, r in rows))
    return QASet(path.stem, items, metric=metric, metric_reason=reason, skipped=sorted(skipped, key=_line),
                 lines=len(items) + len(skipped))


def _line(skip: dict[str, Any]) -> int:
    return skip["line"] if isinstance(skip["line"], int) else 0


def squad_documents(articles: Path) -> list[Document]:
    return [Document(source=f"{row['title']}#{i}", text=p, metadata={"title": row["title"], "paragraph_index": i})
            for _, row in read_jsonl(articles) for i, p in enumerate(row["paragraphs"])]


def load_squad(folder: str | Path) -> QASet:
    """SQuAD-style folder; each question's gold source is its paragraph ``<title>#<paragraph_index>``."""
    folder = Path(folder)
    items: list[QAItem] = []
    skipped: list[dict[str, Any]] = []
    for n, r in read_jsonl(folder / "qa.jsonl", skipped):
        problem = _row_problem({"answers": [], **r}) or (
            None if isinstance(r.get("title"), str) and isinstance(r.get("paragraph_index"), int) else
            "fields 'title' (a string) and 'paragraph_index' (a whole number) are needed")
        if problem:
            skipped.append({"line": n, "reason": problem})
            continue
        items.append(QAItem(str(r.get("id", n)), r["question"], list(r.get("answers", [])),
                            [f"{r['title']}#{r['paragraph_index']}"], r.get("is_impossible", False),
                            {"title": r["title"], "line": n}))
    return QASet(folder.name, items, squad_documents(folder / "articles.jsonl"), "f1",
                 metric_reason="SQuAD-style folder: token F1, SQuAD's own metric", skipped=skipped,
                 lines=len(items) + len(skipped))


def api_doc_source(record: dict) -> str:
    """An API record's source name: the string arguments of its ``api_call`` joined by '/' (a model URL, or
    repository/model), which tell records apart where ``api_name`` often does not; else the api_name."""
    from ragtune.evaluate.calls import first_call, string_arguments

    found = first_call(str(record.get("api_call", "")))
    strings = string_arguments(found) if found is not None else []
    return "/".join(s.strip("/") for s in strings) or str(record.get("api_name", "")) or \
        str(record.get("api_call", ""))


def api_doc_text(record: dict) -> str:
    keys = ("domain", "functionality", "api_name", "api_call", "api_arguments", "description", "example_code")
    return "\n".join(f"{k}: {record[k]}" for k in keys if record.get(k))


def load_apibench(folder: str | Path) -> QASet:
    """APIBench-style folder (any hub): the instruction is the question, the gold api_call the answer."""
    folder = Path(folder)
    docs: dict[str, Document] = {}
    by_key: dict[str, list[str]] = {}  # several records describe the same API (model URL); each is a document
    for _, rec in read_jsonl(folder / "api_docs.jsonl"):
        key, text = api_doc_source(rec), api_doc_text(rec)
        if any(docs[s].text == text for s in by_key.get(key, [])):
            continue  # an exact duplicate record
        source = key if key not in by_key else f"{key}#{len(by_key[key]) + 1}"
        by_key.setdefault(key, []).append(source)
        docs[source] = Document(source, text, {"api_name": rec.get("api_name", ""), "url": key})
    from ragtune.evaluate.apibench import instruction_of, system_prompt

    skipped: list[dict[str, Any]] = []
    items, rows = [], list(read_jsonl(folder / "eval.jsonl", skipped))
    for n, row in rows:
        question = instruction_of(row.get("code", "")) if isinstance(row.get("code"), str) else None
        if not question or not isinstance(row.get("api_call"), str) or not row["api_call"].strip():
            skipped.append({"line": n, "reason": "needs 'code' with '###Instruction:' and 'api_call'"})
            continue
        key = api_doc_source(row.get("api_data") or {"api_call": row["api_call"]})
        items.append(QAItem(f"api-{n}", question, [row["api_call"]], by_key.get(key, [key]), metadata={"line": n}))
    # the fine-tuning split (seeded 80/10/10 of eval.jsonl), so the test split is never trained on
    from ragtune.evaluate.apibench import load_apibench as finetune_splits

    split_of = {ex.line: name for name, exs in finetune_splits(folder).items() for ex in exs}
    for item in items:
        item.metadata["split"] = split_of.get(item.metadata["line"])
    if not items:
        raise InputError(f"{folder / 'eval.jsonl'}: no usable rows; each needs 'code' with '###Instruction:' and "
                         "'api_call'")
    return QASet(folder.name, items, list(docs.values()), "call", system_prompt(rows[0][1] if rows else {}),
                 metric_reason="APIBench-style folder: gold answers are API calls, compared as syntax trees",
                 skipped=sorted(skipped, key=_line), lines=len(items) + len(skipped))


def detect_format(path: Path) -> str:
    """"squad" or "apibench" for those folders; "jsonl" (rows of questions) for a file or a datasets folder."""
    from ragtune.finetune.tables import is_table

    if path.is_dir() and not is_table(path):
        if (path / "articles.jsonl").is_file() and (path / "qa.jsonl").is_file():
            return "squad"
        if (path / "api_docs.jsonl").is_file() and (path / "eval.jsonl").is_file():
            return "apibench"
        raise InputError(f"{path}: folder is neither SQuAD-style (articles.jsonl + qa.jsonl), APIBench-style "
                         "(api_docs.jsonl + eval.jsonl) nor a datasets folder (save_to_disk)")
    return "jsonl"


def load_qa(path: str | Path, fmt: str = "auto", metric: str | None = None,
            fields: dict[str, str] | None = None) -> QASet:
    """Load a QA set in any supported format ("auto" detects it from the path); ``metric`` overrides the one
    the set declares or implies; ``fields`` maps the columns of a rows file (`load_jsonl`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; give a QA JSONL file or a SQuAD/APIBench-style folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    loaders: dict[str, Callable[[Path], QASet]] = {"jsonl": lambda p: load_jsonl(p, fields), "squad": load_squad,
                                                   "apibench": load_apibench}
    if fmt not in loaders:
        raise InputError(f"QA format '{fmt}' is unknown; use one of auto, {', '.join(loaders)}")
    qa = loaders[fmt](path)
    if metric:
        get_metric(metric)  # an unknown name fails here, before any work
        qa = replace(qa, metric=metric, metric_reason="given with --metric")
    return qa


def split_ids(qa: QASet, train: str | Path | None) -> set[str]:
    """Ids of the items whose question appears in a training file (questions compared normalised)."""
    if train is None:
        return set()
    from ragtune.evaluate.apibench import instruction_of
    from ragtune.metrics import normalize

    seen = set()
    for _, row in read_jsonl(Path(train)):
        text = row.get("question") or row.get("prompt") or row.get("instruction") or ""
        if not text and isinstance(row.get("messages"), list):
            text = next((m.get("content", "") for m in row["messages"] if m.get("role") == "user"), "")
        seen.add(normalize(instruction_of(text) or text))
    return {it.id for it in qa.items if normalize(it.question) in seen}
