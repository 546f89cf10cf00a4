"""Class-name lists and description files (`{class: [sentence, ...]}`, JSON or YAML).

The description file is the one CuPL made common and microCLIP reads: one key per class,
a list of sentences each. Files found in the wild spell class names their own way
("Black_footed_Albatross" vs "black footed albatross"), so matching against a data set's
classes ignores case, spaces and underscores; anything that still does not match is
named, with its closest spellings, instead of silently producing an empty head.
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from clipadapt.errors import ClipAdaptError

__all__ = [
    "DescriptionMatch", "UnusedDescriptionsWarning", "check_distinct_names", "load_descriptions", "match_descriptions",
    "normalise_class_name", "read_class_names", "read_description_file",
]

# How many names an error message lists before it says "... and N more": enough to
# see the pattern (a prefix, a spelling), short enough to stay readable.
_LIST_AT_MOST = 12


class UnusedDescriptionsWarning(UserWarning):
    """The description file has classes the data set does not: they are ignored."""


@dataclass
class DescriptionMatch:
    """Descriptions keyed by the caller's class names, plus the file keys nobody asked for."""

    descriptions: dict[str, list[str]]
    unused: list[str] = field(default_factory=list)


def normalise_class_name(name: str) -> str:
    """The form class names are compared in: case-folded, underscores as spaces, runs of
    whitespace collapsed. `normalise_class_name(" Black_footed  Albatross")` is
    `"black footed albatross"`."""
    return " ".join(str(name).replace("_", " ").split()).casefold()


def read_class_names(spec: str | Path) -> list[str]:
    """Class names from a text file (one per line; blank lines and `#` comments skipped)
    or from a comma-separated list such as `"cat,dog,red fox"`.

    A spec that names an existing file is read as a file; one that looks like a path
    (has a `/` or ends in `.txt`) but does not exist is an error rather than a
    one-class list, because that is almost always a typo in the path.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise ClipAdaptError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                 "save the class list as UTF-8, one class per line.") from None
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        source = str(path)
    elif path.is_dir():
        raise ClipAdaptError(f"{path} is a folder; give a text file with one class per line, "
                             "or a comma-separated list of class names.")
    elif "," not in text and ("/" in text or "\\" in text or text.lower().endswith(".txt")):
        raise ClipAdaptError(f"Class-name file {path} not found; check the path, or give the classes "
                             "as a comma-separated list (e.g. 'cat,dog').")
    else:
        names = [part.strip() for part in text.split(",") if part.strip()]
        source = "the class list"
    if not names:
        raise ClipAdaptError(f"{source} names no classes; give one class per line or 'cat,dog,...'.")
    check_distinct_names(names, source)
    return names


def check_distinct_names(names: Sequence[str], source: str) -> None:
    """ClipAdaptError if two names are equal after `normalise_class_name`."""
    # Two names that normalise alike could never be told apart when descriptions are
    # matched back to classes, so they are rejected where they enter.
    seen: dict[str, str] = {}
    for name in names:
        key = normalise_class_name(name)
        if key in seen:
            same = "twice" if seen[key] == name else f"as '{seen[key]}' and '{name}'"
            raise ClipAdaptError(f"{source} lists the class '{name}' {same} (names are compared ignoring "
                                 "case, spaces and underscores); remove the duplicate.")
        seen[key] = name


def read_description_file(path: str | Path) -> dict[str, list[str]]:
    """Read and validate a description file, without matching it to any class list.

    JSON by default; `.yaml`/`.yml` files are read as YAML. Every key must map to a
    non-empty list of non-empty strings (sentences are stripped of surrounding spaces).
    Errors are ClipAdaptError naming the file and, for syntax errors, line and column.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise ClipAdaptError(f"Description file {path} {what}; give a JSON file {{class: [sentence, ...]}} "
                             "(write one with `clipadapt describe`).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClipAdaptError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8.") from None
    if not text.strip():
        raise ClipAdaptError(f"{path} is empty; expected {{class: [sentence, ...]}}.")
    data = _parse_yaml(path, text) if path.suffix.lower() in (".yaml", ".yml") else _parse_json(path, text)
    return _validate(path, data)


def _parse_json(path: Path, text: str):
    def no_duplicate_keys(pairs):
        # json.loads keeps the last of two equal keys without a word; for descriptions
        # that silently throws half a class's sentences away.
        keys = [k for k, _ in pairs]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise ClipAdaptError(f"{path}: the key '{dup}' appears more than once; merge its sentences into one list.")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as exc:
        hint = " (a YAML file? name it .yaml)" if exc.lineno == 1 and exc.colno == 1 else ""
        raise ClipAdaptError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}{hint}.") from None


def _parse_yaml(path: Path, text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ClipAdaptError(f"{path} is not valid YAML: {problem}{where}.") from None


def _validate(path: Path, data) -> dict[str, list[str]]:
    if not isinstance(data, dict):
        raise ClipAdaptError(f"{path} must hold an object {{class: [sentence, ...]}} at the top level, "
                             f"not a {_kind(data)}.")
    if not data:
        raise ClipAdaptError(f"{path} has no classes; expected {{class: [sentence, ...]}}.")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        name = str(key).strip()
        if not name:
            raise ClipAdaptError(f"{path} has an empty class name; give every list a class name as its key.")
        if name in out:
            raise ClipAdaptError(f"{path}: the key '{name}' appears more than once (surrounding spaces are ignored); "
                                 "merge its sentences into one list.")
        if isinstance(value, str):
            raise ClipAdaptError(f"{path}: class '{name}' has a single string, not a list; "
                                 f"write it as [\"{_shorten(value)}\"].")
        if not isinstance(value, list):
            raise ClipAdaptError(f"{path}: class '{name}' must map to a list of sentences, not a {_kind(value)}.")
        if not value:
            raise ClipAdaptError(f"{path}: class '{name}' has an empty list; give it at least one sentence "
                                 "or remove the class.")
        sentences = []
        for i, sentence in enumerate(value):
            if not isinstance(sentence, str):
                raise ClipAdaptError(f"{path}: class '{name}', item {i + 1} is a {_kind(sentence)}, not a sentence; "
                                     "every item must be a string.")
            if not sentence.strip():
                raise ClipAdaptError(f"{path}: class '{name}', item {i + 1} is an empty string; remove it.")
            sentences.append(sentence.strip())
        out[name] = sentences
    return out


def match_descriptions(descriptions: dict[str, list[str]], classes: Iterable[str], source: str = "the descriptions",
                       strict: bool = False) -> DescriptionMatch:
    """Re-key `descriptions` by `classes` (in their order).

    An exact key wins; otherwise the key must equal the class after
    `normalise_class_name`. Every class needs descriptions (the error lists those without,
    with the closest file keys). File keys no class matched are returned in `unused`;
    with `strict=True` they are an error instead.
    """
    classes = list(classes)
    check_distinct_names(classes, "the class list")
    by_norm: dict[str, list[str]] = {}
    for key in descriptions:
        by_norm.setdefault(normalise_class_name(key), []).append(key)
    used: set[str] = set()
    matched: dict[str, list[str]] = {}
    missing: list[str] = []
    for cls in classes:
        if cls in descriptions:
            key = cls
        else:
            candidates = [k for k in by_norm.get(normalise_class_name(cls), []) if k not in used]
            if len(candidates) > 1:
                raise ClipAdaptError(f"{source}: the keys {', '.join(repr(k) for k in candidates)} all match the class "
                                     f"'{cls}' (case, spaces and underscores are ignored); merge them into one.")
            if not candidates:
                missing.append(cls)
                continue
            key = candidates[0]
        used.add(key)
        matched[cls] = list(descriptions[key])
    unused = [k for k in descriptions if k not in used]
    if missing:
        raise ClipAdaptError(_missing_message(source, missing, len(classes), unused or list(descriptions)))
    if unused and strict:
        raise ClipAdaptError(f"{source} has descriptions for {len(unused)} classes that are not in the class list: "
                             f"{_name_list(unused)}. Remove them, or allow them (they are then ignored).")
    return DescriptionMatch(matched, unused)


def _missing_message(source: str, missing: list[str], total: int, keys: list[str]) -> str:
    norm_keys: dict[str, str] = {}
    for k in keys:
        norm_keys.setdefault(normalise_class_name(k), k)
    parts = []
    for cls in missing[:_LIST_AT_MOST]:
        close = difflib.get_close_matches(normalise_class_name(cls), list(norm_keys), n=2, cutoff=0.6)
        hint = f" (closest: {', '.join(repr(norm_keys[c]) for c in close)})" if close else " (no close match)"
        parts.append(f"'{cls}'{hint}")
    more = f", ... and {len(missing) - _LIST_AT_MOST} more" if len(missing) > _LIST_AT_MOST else ""
    return (f"{source} has no descriptions for {len(missing)} of {total} classes: {', '.join(parts)}{more}. "
            "Add them to the file, or rename the keys to the class names (matching ignores case, spaces and "
            "underscores); `clipadapt describe` can write the missing ones.")


def load_descriptions(path: str | Path, classes: Iterable[str] | None = None, strict: bool = False) -> dict[str, list[str]]:
    """Read a description file `{class: [sentence, ...]}` (JSON, or YAML by suffix).

    Without `classes`: every validated entry, keyed as in the file. With `classes`: one
    entry per class, in that order, keyed by the given names; file keys are matched
    ignoring case, spaces and underscores. Classes without descriptions are a
    ClipAdaptError listing them with their closest file keys. File keys that match no
    class are ignored with an `UnusedDescriptionsWarning` naming them, or are an error
    when `strict=True`.

    >>> load_descriptions("cub.json", ["Black_footed_Albatross"])  # doctest: +SKIP
    {'Black_footed_Albatross': ['A black-footed albatross has ...', ...]}
    """
    data = read_description_file(path)
    if classes is None:
        return data
    match = match_descriptions(data, classes, source=str(Path(path).expanduser()), strict=strict)
    if match.unused:
        warnings.warn(f"{path}: ignoring descriptions of {len(match.unused)} classes not in the class list: "
                      f"{_name_list(match.unused)}.", UnusedDescriptionsWarning, stacklevel=2)
    return match.descriptions


def _name_list(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_LIST_AT_MOST])
    return shown + (f", ... and {len(names) - _LIST_AT_MOST} more" if len(names) > _LIST_AT_MOST else "")


def _kind(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _shorten(text: str, limit: int = 40) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
