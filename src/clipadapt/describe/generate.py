"""Ask a language model for every class's descriptions, with an on-disk answer cache.

Hundreds of classes mean hundreds of requests, some of which fail or get interrupted;
each answer is therefore cached as soon as it arrives, keyed by what determines it
(endpoint, model, messages, temperature), and a re-run asks only for what is missing.
The description file itself is written once, atomically, when every class has its
sentences, so a file at the output path is always complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from clipadapt.describe.client import ChatClient
from clipadapt.describe.files import check_distinct_names
from clipadapt.describe.prompting import build_messages, parse_descriptions
from clipadapt.io import atomic_write, write_json
from clipadapt.errors import ClipAdaptError

__all__ = ["AnswerCache", "DescribeResult", "default_cache_dir", "generate_descriptions", "save_descriptions"]


def default_cache_dir() -> Path:
    """`$CLIPADAPT_CACHE/descriptions` if set, else `~/.cache/clipadapt/descriptions`."""
    base = os.environ.get("CLIPADAPT_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "clipadapt") / "descriptions"


class AnswerCache:
    """Raw model answers on disk, one JSON file per question.

    The raw text is stored (not the parsed sentences) so that a better parser or another
    --per-class reuses old answers. The API key is never part of the key nor the file.
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    @staticmethod
    def key(url: str, model: str, messages: list[dict], temperature: float) -> str:
        """A stable hash of everything that determines the answer."""
        blob = json.dumps({"url": url, "model": model, "messages": messages, "temperature": temperature},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached answer, or None; an unreadable entry counts as absent (it is re-asked)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        answer = record.get("answer") if isinstance(record, dict) else None
        return answer if isinstance(answer, str) else None

    def put(self, key: str, record: dict) -> None:
        try:
            write_json(self.path(key), record)
        except OSError as exc:
            raise ClipAdaptError(f"Cannot write the answer cache in {self.root} ({exc.strerror or exc}); "
                                 "give a writable folder with --cache.") from None


@dataclass
class DescribeResult:
    """Descriptions per class (in the order asked) and where they came from."""

    descriptions: dict[str, list[str]]
    asked: int = 0
    cached: int = 0
    short: dict[str, int] = field(default_factory=dict)  # classes with fewer sentences than asked for


def generate_descriptions(classes: Sequence[str], client: ChatClient, per_class: int = 5, domain: str | None = None,
                          cache_dir: Path | None = None, progress: bool = False) -> DescribeResult:
    """Ask `client` for `per_class` visual descriptions of each class.

    Answers come from the cache under `cache_dir` (default: `default_cache_dir()`) when
    present and are cached as they arrive, so an interrupted run resumes where it stopped.
    A class whose answer holds no usable sentence is an error (its answer is not cached,
    so a re-run asks again); one with fewer than `per_class` keeps what it got and is
    listed in `DescribeResult.short`.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    classes = list(classes)
    if not classes:
        raise ClipAdaptError("No classes to describe; give a class-name file or a comma-separated list.")
    if per_class < 1:
        raise ClipAdaptError(f"--per-class must be at least 1, got {per_class}.")
    check_distinct_names(classes, "the class list")
    cache = AnswerCache(cache_dir)
    result = DescribeResult({})
    bar = Progress(TextColumn("[bold]describe"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), console=Console(stderr=True), disable=not progress)
    with bar:
        task = bar.add_task("describe", total=len(classes), info="")
        for name in classes:
            bar.update(task, info=name)
            messages = build_messages(name, per_class, domain)
            key = cache.key(client.url, client.model, messages, client.temperature)
            answer = cache.get(key)
            sentences = parse_descriptions(answer, per_class) if answer is not None else []
            if sentences:
                result.cached += 1
            else:
                answer = client.complete(messages)
                sentences = parse_descriptions(answer, per_class)
                if not sentences:
                    snippet = " ".join(answer.split())[:200]
                    raise ClipAdaptError(f"{client.model} at {client.url} gave no usable description of '{name}' "
                                         f"(answer: {snippet!r}); re-run to ask again, or try another --model.")
                cache.put(key, {"url": client.url, "model": client.model, "temperature": client.temperature,
                                "messages": messages, "answer": answer,
                                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
                result.asked += 1
            if len(sentences) < per_class:
                result.short[name] = len(sentences)
            result.descriptions[name] = sentences
            bar.advance(task)
    return result


def save_descriptions(path: Path, descriptions: dict[str, list[str]]) -> Path:
    """Write `{class: [sentence, ...]}` as UTF-8 JSON, atomically (a crash leaves no partial file)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ClipAdaptError(f"--out {path} is a folder; give a file name such as {path / 'descriptions.json'}.")
    text = json.dumps(descriptions, indent=2, ensure_ascii=False) + "\n"
    try:
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise ClipAdaptError(f"Cannot write {path} ({exc.strerror or exc}); check the folder exists and is writable.") from None
    return path
