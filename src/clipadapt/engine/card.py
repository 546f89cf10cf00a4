"""The run card (card.json) as a typed object: what rebuilds the model (method, params,
backbone, task, preprocessing) and the facts of the run (seed, config, data, selection,
metrics, calibration, warnings). Readers use its fields; `RunCard.from_dict` reads every
card written so far.

Versions: 1 is the untyped dict written before issue 27 (no "version" key); 2 adds
"version" and nothing else, so a version-1 card reads unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

CARD_VERSION = 2


@dataclass
class RunCard:
    """A run's card. Keys a writer adds beyond the fields (an importer's `source`, the
    self-training heads) are kept in `extra` and written back as they were.

    >>> card = RunCard("linear_probe", {"name": "clipadapt-tiny"},
    ...                {"attributes": [{"name": "pet", "classes": ["cat", "dog"]}]})
    >>> card.classes, card.threshold, card.temperatures
    ({'pet': ['cat', 'dog']}, 0.5, {})"""

    method: str
    backbone: dict
    task: dict
    params: dict = field(default_factory=dict)
    prompts: Any = None
    preprocessing: dict = field(default_factory=dict)
    tap: dict | None = None
    trainable_parameters: int | None = None
    versions: dict | None = None
    seed: int | None = None
    processes: int | None = None
    cpu_threads: int | None = None
    config: dict | None = None
    data: dict | None = None
    selection: dict | None = None
    metrics: dict | None = None
    calibration: dict | None = None
    thresholds: dict | None = None  # a multi-label run's decision thresholds (engine/thresholds.py)
    no_progress: bool | None = None
    at_chance: bool | None = None
    warnings: list[str] | None = None
    extra: dict = field(default_factory=dict)
    version: int = CARD_VERSION

    @classmethod
    def from_dict(cls, raw: dict) -> RunCard:
        """The card of any version: known keys become fields, the others `extra`."""
        known = {f.name for f in fields(cls)} - {"extra", "version"}
        card = cls(**{k: v for k, v in raw.items() if k in known},
                   extra={k: v for k, v in raw.items() if k not in known and k != "version"})
        card.version = int(raw.get("version", 1))  # no version: written before cards had one
        return card

    def to_dict(self) -> dict:
        """The JSON of card.json: the fields that are set, then `extra`, then the version."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "version")}
        out = {k: v for k, v in out.items() if v is not None}
        return {**out, **self.extra, "version": CARD_VERSION}

    @property
    def threshold(self) -> float:
        """The multi-label decision threshold the run was trained with (0.5 when not set)."""
        return float(((self.config or {}).get("train") or {}).get("threshold", 0.5))

    @property
    def attribute_thresholds(self) -> dict[str, float]:
        """A multi-label run's decision threshold of each attribute, as train.thresholds chose
        them (train.threshold for every attribute when the card records none)."""
        values = (self.thresholds or {}).get("values")
        if values:
            return {name: float(t) for name, t in values.items()}
        return {a["name"]: self.threshold for a in self.task.get("attributes", [])}

    @property
    def classes(self) -> dict[str, list[str]]:
        """Every attribute's classes, in the order of the run's probability columns."""
        return {a["name"]: list(a["classes"]) for a in self.task.get("attributes", [])}

    @property
    def temperatures(self) -> dict[str, float]:
        """The calibrated temperature per attribute ({} when the run was not calibrated:
        every temperature is 1)."""
        return dict((self.calibration or {}).get("temperatures") or {})

    # A dict's reading and writing by key, for code written against the untyped card
    # (library users, the suite); clipadapt's own readers use the fields.
    def __getitem__(self, key: str):
        found = self.to_dict()
        if key not in found:
            raise KeyError(key)
        return found[key]

    def get(self, key: str, default=None):
        return self.to_dict().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_dict()

    def __setitem__(self, key: str, value) -> None:
        if key in {f.name for f in fields(self)} - {"extra", "version"}:
            setattr(self, key, value)
        else:
            self.extra[key] = value


def as_card(card: RunCard | dict) -> RunCard:
    """A RunCard from either form (a dict is read as a card of its version)."""
    return card if isinstance(card, RunCard) else RunCard.from_dict(card)
