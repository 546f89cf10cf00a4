"""A query's probability from the per-attribute probabilities, and its truth on labels.

The model gives each attribute its own output (one sigmoid per multi-label attribute,
one softmax per single-label one), computed from the image alone. Read as the model's
belief, the attributes are then independent given the image, and the joint probability
the model implies is the product of the per-attribute ones. So:

    P(a & b) = P(a) P(b)      P(!a) = 1 - P(a)      P(a | b) = 1 - (1 - P(a)) (1 - P(b))

These rules are exact when every attribute appears once in the query. When one appears
more than once (`Hat & !Hat`, `weather=rain | weather=snow`), its two uses are not
independent of each other (the rules would give P(Hat)(1 - P(Hat)) instead of 0, and
P(rain) + P(snow) - P(rain) P(snow) instead of P(rain) + P(snow) for two classes that
exclude each other). Such attributes are conditioned on instead: the query is scored
with the rules for every state of the repeated attributes, held fixed, and the results
are summed weighted by those states' probabilities (the law of total probability), which
is exact again.

Every attribute is a row of state probabilities: a multi-label attribute has the states
(absent, present), a single-label one its classes; labels use the same state numbers.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Mapping

import numpy as np

from clipadapt.errors import ClipAdaptError
from clipadapt.search.query import And, Attribute, Node, Not, Term

MAX_CONDITIONED_STATES = 4096  # joint states of the repeated attributes enumerated per row


def state_of(term: Term, attribute: Attribute) -> int:
    """The state number at which `term` is true (multi-label: 1 = present)."""
    return 1 if attribute.multilabel else attribute.classes.index(term.value)


def _leaves(node: Node):
    if isinstance(node, Term):
        yield node
    else:
        for child in ([node.operand] if isinstance(node, Not) else node.operands):
            yield from _leaves(child)


def query_probability(node: Node, states: Mapping[str, np.ndarray], attributes: Mapping[str, Attribute]) -> np.ndarray:
    """Per row, the probability of a bound query. `states[name]`: [N, S] state
    probabilities of each attribute the query names (see the module doc)."""
    uses = Counter(leaf.name for leaf in _leaves(node))
    repeated = [name for name, count in uses.items() if count > 1]
    if not repeated:
        return _by_rules(node, states, attributes, {})
    sizes = [states[name].shape[1] for name in repeated]
    if int(np.prod(sizes)) > MAX_CONDITIONED_STATES:
        raise ClipAdaptError(f"The query names {', '.join(repeated)} more than once each: scoring it exactly takes "
                             f"{int(np.prod(sizes))} joint states, more than {MAX_CONDITIONED_STATES}. Name fewer "
                             "attributes more than once, or split the query into several.")
    total = None
    for combo in itertools.product(*(range(s) for s in sizes)):
        weight = np.prod([states[name][:, s] for name, s in zip(repeated, combo)], axis=0)
        part = weight * _by_rules(node, states, attributes, dict(zip(repeated, combo)))
        total = part if total is None else total + part
    return total


def _by_rules(node: Node, states, attributes, fixed: dict[str, int]) -> np.ndarray:
    """The product / complement rules; attributes in `fixed` are held at that state."""
    if isinstance(node, Term):
        state = state_of(node, attributes[node.name])
        if node.name in fixed:
            return np.full(len(next(iter(states.values()))), float(fixed[node.name] == state))
        return np.asarray(states[node.name][:, state], dtype=np.float64)
    if isinstance(node, Not):
        return 1.0 - _by_rules(node.operand, states, attributes, fixed)
    parts = [_by_rules(o, states, attributes, fixed) for o in node.operands]
    if isinstance(node, And):
        return np.prod(parts, axis=0)
    return 1.0 - np.prod([1.0 - p for p in parts], axis=0)


def query_truth(node: Node, labels: Mapping[str, np.ndarray], attributes: Mapping[str, Attribute]) -> tuple[np.ndarray, np.ndarray]:
    """(true, labelled) per row for a bound query on label states (-1 = not labelled):
    `labelled` is False where any attribute the query names is unlabelled; `true` is only
    meaningful where it is True."""
    used = list(dict.fromkeys(leaf.name for leaf in _leaves(node)))
    labelled = np.all([np.asarray(labels[name]) >= 0 for name in used], axis=0)
    return _truth(node, labels, attributes), labelled


def _truth(node: Node, labels, attributes) -> np.ndarray:
    if isinstance(node, Term):
        return np.asarray(labels[node.name]) == state_of(node, attributes[node.name])
    if isinstance(node, Not):
        return ~_truth(node.operand, labels, attributes)
    parts = [_truth(o, labels, attributes) for o in node.operands]
    return np.all(parts, axis=0) if isinstance(node, And) else np.any(parts, axis=0)
