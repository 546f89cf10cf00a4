"""What is predicted: attributes, their classes and the text prompts for each class.

A run predicts one or more single-label attributes. Labels are stored as an integer
matrix [N, A] with -1 where an image carries no label for that attribute, so a
single-attribute run is simply A = 1 and the multi-attribute mode masks missing labels.

A multi-label task (pedestrian attributes) is the same matrix with every attribute
binary, classes ("no", "yes"), and the task flagged `multilabel`: the engine then uses
sigmoid-style losses and the field's multi-label metrics, and prediction applies a
threshold. Such an attribute is described by one sentence ("A pedestrian wearing a
hat") rather than a "{}" template; its two class prompts are the sentence's negation
and the sentence itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MISSING = -1  # label value of an image that is not labelled for an attribute
BINARY_CLASSES = ("no", "yes")  # classes of a multi-label attribute: index = label value


def negated_sentence(sentence: str) -> str:
    """A plain negation of an attribute sentence, for zero-shot "sentence vs negation".

    >>> negated_sentence("A pedestrian wearing a hat")
    'A pedestrian not wearing a hat'
    >>> negated_sentence("A female pedestrian")
    'Not a female pedestrian'
    """
    words = sentence.strip().split()
    # "A pedestrian <predicate>" reads naturally with "not" before the predicate.
    if len(words) > 2 and words[0].lower() in ("a", "an") and words[1].lower() in ("pedestrian", "person"):
        return " ".join([words[0], words[1], "not", *words[2:]])
    return "Not " + sentence[:1].lower() + sentence[1:] if sentence else sentence


def normalise_class_name(name: str) -> str:
    """Strip and lower-case a raw label, the rule of every reader (SPEC 1)."""
    return str(name).strip().lower()


@dataclass(frozen=True)
class Attribute:
    """One single-label attribute.

    Args:
        name: attribute name (e.g. "weather"); also the label column name.
        classes: class names, sorted, as they appear in the labels (normalised).
        template: prompt template with one "{}" slot, e.g. "a photo in {} weather.".
        class_words: optional mapping from a class name to the words put in the
            template (e.g. "dusk/dawn" -> "twilight"); unmapped names are used with
            "_" replaced by a space.
    """

    name: str
    classes: tuple[str, ...]
    template: str = "a photo of a {}."
    class_words: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def words(self, class_name: str) -> str:
        """The words that stand for `class_name` inside a prompt."""
        key = class_name.lower()
        return self.class_words.get(key, key.replace("_", " "))

    @property
    def is_sentence(self) -> bool:
        """A binary attribute described by one sentence (no "{}" slot in its template)."""
        return "{}" not in self.template and self.classes == BINARY_CLASSES

    @property
    def sentence(self) -> str:
        """The attribute's sentence (multi-label attributes); the "yes" prompt otherwise."""
        return self.template if self.is_sentence else self.prompts()[-1]

    def prompts(self) -> list[str]:
        """One prompt per class, in class order (a sentence attribute: its negation, then
        the sentence; class_words["no"] overrides the negation)."""
        if self.is_sentence:
            return [self.class_words.get("no", negated_sentence(self.template)), self.template]
        return [self.template.format(self.words(c)) for c in self.classes]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "template": self.template,
            "class_words": dict(self.class_words),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Attribute":
        return cls(d["name"], tuple(d["classes"]), d.get("template", "a photo of a {}."), dict(d.get("class_words", {})))


@dataclass(frozen=True)
class TaskSpec:
    """The attributes a run predicts, in a fixed order; `multilabel`: every attribute is
    binary ("no", "yes") and the task is scored as multi-label attribute recognition."""

    attributes: tuple[Attribute, ...]
    multilabel: bool = False

    def __post_init__(self):
        if self.multilabel:
            odd = [a.name for a in self.attributes if a.classes != BINARY_CLASSES]
            if odd:
                raise ValueError(f"A multi-label task needs binary ('no', 'yes') attributes; not binary: {odd}")

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def __len__(self) -> int:
        return len(self.attributes)

    def to_dict(self) -> dict:
        return {"attributes": [a.to_dict() for a in self.attributes], "multilabel": self.multilabel}

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        return cls(tuple(Attribute.from_dict(a) for a in d["attributes"]), bool(d.get("multilabel", False)))
