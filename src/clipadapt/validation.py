"""pydantic validation errors as plain sentences, one per setting.

pydantic reports a value that fits no member of a union (`heads: int | dict[str, int]`)
once per member, with the member's type in the location ('heads.int',
'heads.dict[str,int]'). Users should read one sentence about their key instead:
"'heads' must be a whole number or a mapping of names to whole numbers (got 'abc')".
"""

from __future__ import annotations

import re

from pydantic import ValidationError

# The forms pydantic gives a union member in an error's location.
_TAG = re.compile(r"(int|float|str|bool|none|bytes|(list|dict|tuple|set|frozenset|literal|function-\w+)\[.*\])")
_NOUNS = {"int": ("a whole number", "whole numbers"), "float": ("a number", "numbers"), "str": ("a text", "texts"),
          "bool": ("true or false", "true/false values"), "none": ("null", "nulls"), "bytes": ("bytes", "bytes")}


def plain_type(tag: str, plural: bool = False) -> str:
    """'dict[str,int]' -> 'a mapping of names to whole numbers' (a union member in words)."""
    tag = tag.strip()
    if tag in _NOUNS:
        return _NOUNS[tag][plural]
    match = re.fullmatch(r"function-\w+\[[^,]*,\s*(.*)\]", tag)  # a validator around a type
    if match:
        return plain_type(match.group(1), plural)
    match = re.fullmatch(r"(?:list|tuple|set|frozenset)\[(.*?)(?:,\s*\.\.\.)?\]", tag)
    if match:
        return f"{'lists' if plural else 'a list'} of {plain_type(match.group(1), True)}"
    match = re.fullmatch(r"dict\[str,\s*(.*)\]", tag)
    if match:
        return f"{'mappings' if plural else 'a mapping'} of names to {plain_type(match.group(1), True)}"
    match = re.fullmatch(r"literal\[(.*)\]", tag)
    if match:
        return "one of " + ", ".join(match.group(1).split(","))
    return tag


def plain_errors(exc: ValidationError, prefix: str = "") -> list[tuple[str, dict]]:
    """(key, sentence-or-error) per problem, union members merged into one sentence.

    Returns a list of (dotted key, error dict) where the error dict is pydantic's, except
    for a union: then its 'type' is 'union' and 'msg' reads "must be A or B".
    """
    grouped: dict[tuple, list[tuple[str, dict]]] = {}
    order: list[tuple] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        cut = next((i for i, part in enumerate(loc) if isinstance(part, str) and _TAG.fullmatch(part)), None)
        key = loc if cut is None else loc[:cut]
        if key not in grouped:
            grouped[key] = []
            order.append(key)
        grouped[key].append(("" if cut is None else loc[cut], err))
    out = []
    for key in order:
        members = grouped[key]
        dotted = prefix + ".".join(str(p) for p in key)
        tags = list(dict.fromkeys(tag for tag, _ in members if tag))
        if not tags:
            out.extend((dotted, err) for _, err in members)
            continue
        own = [err for _, err in members if err["type"] == "value_error"]
        if own:  # the member the value was meant for says what is wrong with it
            out.append((dotted, own[0]))
            continue
        whole = next((err for tag, err in members if err["loc"][-1] == tag), members[0][1])
        out.append((dotted, {"type": "union", "loc": key, "input": whole.get("input"),
                             "msg": "must be " + " or ".join(plain_type(t) for t in tags)}))
    return out


def describe_error(key: str, err: dict) -> str:
    """One problem of `plain_errors` as "'key': message (got value)"."""
    if err["type"] == "union":
        return f"'{key}' {err['msg']} (got {err.get('input')!r})"
    if err["type"] == "value_error":  # our own validators already quote the value
        return f"'{key}': {err['msg'].removeprefix('Value error, ')}"
    return f"'{key}': {err['msg']} (got {err.get('input')!r})"


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """Every problem of a validation error, one plain sentence each, joined by '; '."""
    return "; ".join(describe_error(key, err) for key, err in plain_errors(exc, prefix))
