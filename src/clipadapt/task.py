"""What is predicted: attributes, their classes and the text prompts for each class.

A run predicts one or more single-label attributes. Labels are stored as an integer
matrix [N, A] with -1 where an image carries no label for that attribute, so a
single-attribute run is simply A = 1 and the multi-attribute mode masks missing labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MISSING = -1  # label value of an image that is not labelled for an attribute


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

    def prompts(self) -> list[str]:
        """One prompt per class, in class order."""
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
    """The attributes a run predicts, in a fixed order."""

    attributes: tuple[Attribute, ...]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def __len__(self) -> int:
        return len(self.attributes)

    def to_dict(self) -> dict:
        return {"attributes": [a.to_dict() for a in self.attributes]}

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        return cls(tuple(Attribute.from_dict(a) for a in d["attributes"]))
