"""The attribute query language of `clipadapt search` and `eval --retrieval`.

    query  := or
    or     := and ('|' and)*
    and    := unary ('&' unary)*
    unary  := '!' unary | '(' query ')' | term
    term   := name | name '=' name

`!` binds tighter than `&`, which binds tighter than `|` (as in C and Python), so
`a | b & !c` is `a | (b & (!c))`. A bare name is a run of characters other than white
space, the operators `& | ! ( ) =` and the three quote marks; a name holding any of those
(PA100K's `Skirt&Dress`) is written in quotes: 'Skirt&Dress', "Skirt&Dress" or
`Skirt&Dress` (in a shell, single quotes inside the double-quoted query). Names are matched
case-insensitively to the run's attributes (an exact match wins); `attr=class` picks a
class of a single-label attribute.

Parsing (`parse_query`) knows nothing of a run; `bind` checks the names against the
run's attributes and returns the same tree with their spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clipadapt.errors import ClipAdaptError
from clipadapt.suggest import did_you_mean

OPERATORS = "&|!()="
QUOTES = "'\"`"
_BARE = re.compile(r"[^\s&|!()='\"`]+")
HOW = ("Write attribute names joined by & (and), | (or), ! (not) and parentheses, e.g. "
       "\"Female & Backpack & !Hat\"; quote a name holding & | ! ( ) = or spaces: 'Skirt&Dress'.")


@dataclass(frozen=True)
class Term:
    """One attribute (multi-label: present) or one class of a single-label attribute."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return _show(self.name) + (f"={_show(self.value)}" if self.value is not None else "")


@dataclass(frozen=True)
class Not:
    operand: "Node"

    def __str__(self) -> str:
        return f"!{_wrapped(self.operand)}"


@dataclass(frozen=True)
class And:
    operands: tuple["Node", ...]

    def __str__(self) -> str:
        return " & ".join(_wrapped(o, Or) for o in self.operands)


@dataclass(frozen=True)
class Or:
    operands: tuple["Node", ...]

    def __str__(self) -> str:
        return " | ".join(str(o) for o in self.operands)


Node = Term | Not | And | Or


@dataclass(frozen=True)
class Attribute:
    """An attribute a query may name: `classes` empty for a multi-label attribute
    (present or absent), else the classes of a single-label one."""

    name: str
    classes: tuple[str, ...] = ()

    @property
    def multilabel(self) -> bool:
        return not self.classes


def _show(name: str) -> str:
    """A name as the query language writes it (quoted when it is not a bare word)."""
    if _BARE.fullmatch(name):
        return name
    quote = next((q for q in QUOTES if q not in name), "'")
    return f"{quote}{name}{quote}"


def _wrapped(node: Node, *loose: type) -> str:
    """`node` in parentheses where its operator binds looser than its parent's."""
    loose = loose or (And, Or)
    return f"({node})" if isinstance(node, loose) else str(node)


# ------------------------------------------------------------------ tokens
@dataclass(frozen=True)
class _Token:
    kind: str  # an operator character, "name" or "end"
    text: str
    at: int  # 0-based character position


def _tokens(text: str) -> list[_Token]:
    tokens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in OPERATORS:
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch in QUOTES:
            end = text.find(ch, i + 1)
            if end < 0:
                raise _error(text, i, f"the quote {ch} is never closed", f"Close it: {ch}name{ch}.")
            if end == i + 1:
                raise _error(text, i, "an empty quoted name", "Put the attribute's name between the quotes.")
            tokens.append(_Token("name", text[i + 1:end], i))
            i = end + 1
        else:
            match = _BARE.match(text, i)
            tokens.append(_Token("name", match.group(), i))
            i = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _error(text: str, at: int, problem: str, fix: str = "") -> ClipAdaptError:
    return ClipAdaptError(f"Query {text!r}: {problem} at character {at + 1}. {fix or HOW}".rstrip())


# ------------------------------------------------------------------ parsing
class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    @property
    def next(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def query(self) -> Node:
        node = self.either()
        token = self.next
        if token.kind == ")":
            raise _error(self.text, token.at, "a ')' without its '('", "Remove it or add the '(' it closes.")
        if token.kind == "name":
            raise _error(self.text, token.at, f"a second name {token.text!r} right after another, with no operator "
                         "between them", "Join names with & or |; quote a name holding spaces: 'Long Coat'.")
        if token.kind != "end":
            raise _error(self.text, token.at, f"an unexpected {token.text!r}")
        return node

    def either(self) -> Node:
        return self.joined("|", self.both, Or)

    def both(self) -> Node:
        return self.joined("&", self.unary, And)

    def joined(self, operator: str, operand, node_type) -> Node:
        """operand (operator operand)*: one node for the whole run (a | b | c is one Or)."""
        operands = [operand()]
        while self.next.kind == operator:
            self.take()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else node_type(tuple(operands))

    def unary(self) -> Node:
        token = self.take()
        if token.kind == "!":
            return Not(self.unary())
        if token.kind == "(":
            node = self.either()
            close = self.take()
            if close.kind != ")":
                raise _error(self.text, close.at if close.kind != "end" else token.at,
                             "a '(' that is never closed" if close.kind == "end" else f"{close.text!r} where ')' "
                             "belongs", "Close every '(' with a ')'.")
            return node
        if token.kind == "name":
            if self.next.kind != "=":
                return Term(token.text)
            self.take()
            value = self.take()
            if value.kind != "name":
                raise _error(self.text, value.at, f"'=' after {token.text!r} without a class name",
                             f"Write {token.text}=<class>.")
            return Term(token.text, value.text)
        where = "the end of the query" if token.kind == "end" else repr(token.text)
        raise _error(self.text, token.at, f"an attribute name is missing before {where}")


def parse_query(text: str) -> Node:
    """The tree of a query (see the module doc for the grammar); ClipAdaptError naming the
    character where it goes wrong and how to write it instead."""
    if not str(text).strip():
        raise ClipAdaptError(f"The query is empty. {HOW}")
    return _Parser(str(text)).query()


# ------------------------------------------------------------------ names
def terms(node: Node) -> list[Term]:
    """The terms of a query, each once, in the order they first appear."""
    if isinstance(node, Term):
        return [node]
    children = [node.operand] if isinstance(node, Not) else list(node.operands)
    return list(dict.fromkeys(t for child in children for t in terms(child)))


def _match(name: str, known: list[str], what: str, listed: str, text: str, hint: str = "") -> str:
    """`name` as spelled in `known`: exact, else the one case-insensitive match."""
    if name in known:
        return name
    folded = [k for k in known if k.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    if len(folded) > 1:
        raise ClipAdaptError(f"Query {text!r}: {name!r} matches {', '.join(map(repr, folded))} when case is "
                             "ignored; write the name with its exact case.")
    shown = ", ".join(known[:40]) + (", ..." if len(known) > 40 else "")
    raise ClipAdaptError(f"Query {text!r}: no {what} {name!r}.{did_you_mean(name, known)}{hint} {listed}: {shown}.")


def _quoting_hint(name: str, known: list[str]) -> str:
    """When `name` is a piece of a known name that holds an operator (`Skirt` of
    `Skirt&Dress`), say that such names are quoted."""
    for full in known:
        pieces = [p.lower() for p in re.split(r"[\s&|!()=]+", full) if p]
        if len(pieces) > 1 and name.lower() in pieces:
            return (f" To name {full!r}, quote it: '{full}' (unquoted, its operator characters split it "
                    "into several names).")
    return ""


def bind(node: Node, attributes: list[Attribute], text: str = "") -> Node:
    """`node` with every name spelled as in `attributes`; ClipAdaptError with 'did you
    mean' for an unknown attribute or class, and for a bare single-label attribute or a
    class given to a multi-label one."""
    text = text or str(node)
    by_name = {a.name: a for a in attributes}
    if isinstance(node, Not):
        return Not(bind(node.operand, attributes, text))
    if isinstance(node, (And, Or)):
        return type(node)(tuple(bind(o, attributes, text) for o in node.operands))
    names = list(by_name)
    attribute = by_name[_match(node.name, names, "attribute", "The attributes", text, _quoting_hint(node.name, names))]
    if attribute.multilabel and node.value is not None:
        raise ClipAdaptError(f"Query {text!r}: {attribute.name!r} is a multi-label attribute (present or not): write "
                             f"{_show(attribute.name)} or !{_show(attribute.name)}, without '={node.value}'.")
    if not attribute.multilabel and node.value is None:
        raise ClipAdaptError(f"Query {text!r}: {attribute.name!r} has classes; pick one with "
                             f"{_show(attribute.name)}=<class> (its classes: {', '.join(attribute.classes)}).")
    if node.value is None:
        return Term(attribute.name)
    value = _match(node.value, list(attribute.classes), "class", f"Classes of {attribute.name!r}", text)
    return Term(attribute.name, value)


def read_queries(path) -> list[str]:
    """The queries of a text file: one per line; blank lines and lines starting with #
    are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ClipAdaptError(f"--retrieval {path}: no such file. Pass a text file with one query per line, or "
                             "`default` (every attribute alone and the most frequent pairs).")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClipAdaptError(f"--retrieval {path} cannot be read as UTF-8 text ({exc}).") from None
    queries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not queries:
        raise ClipAdaptError(f"--retrieval {path} holds no queries (blank lines and # comments only); write one "
                             "query per line, e.g. Female & Backpack.")
    return queries
