"""Custom multi-label attribute sets: names plus one sentence each, from a YAML/JSON file.

Accepted forms (the sentence describes the attribute being present):

    attributes:                       # a list, in task order
      - {name: Hat, sentence: "A pedestrian wearing a hat", negation: "A bare-headed pedestrian"}
      - {name: Backpack, sentence: "A pedestrian wearing a backpack"}

    {"Hat": "A pedestrian wearing a hat", "Backpack": "A pedestrian wearing a backpack"}

`negation` is optional: it is the "absent" prompt zero-shot compares the sentence
against (default: the sentence with "not" put in).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from clipadapt.errors import ClipAdaptError
from clipadapt.task import BINARY_CLASSES, Attribute


def read_attribute_file(path: Path) -> list[Attribute]:
    """The attributes of an attribute file, as binary sentence attributes, in file order."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClipAdaptError(f"Attribute file not found: {path} (data.attribute_file).")
    try:
        raw = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ClipAdaptError(f"Cannot parse {path}: {exc}") from None
    entries = raw.get("attributes") if isinstance(raw, dict) and "attributes" in raw else raw
    if isinstance(entries, dict):
        entries = [{"name": k, "sentence": v} for k, v in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise ClipAdaptError(f"{path}: expected a list of {{name, sentence}} under 'attributes', or a mapping "
                             "name -> sentence.")
    attributes, seen = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ClipAdaptError(f"{path}: attribute #{i + 1} needs a 'name' (and a 'sentence'); got {entry!r}.")
        name = entry["name"].strip()
        sentence = entry.get("sentence")
        if not isinstance(sentence, str) or not sentence.strip():
            raise ClipAdaptError(f"{path}: attribute '{name}' has no sentence. Add one sentence describing it.")
        if "{" in sentence or "}" in sentence:
            raise ClipAdaptError(f"{path}: the sentence of '{name}' contains braces; write it as plain text.")
        if name.lower() in seen:
            raise ClipAdaptError(f"{path}: attribute '{name}' is listed twice.")
        seen.add(name.lower())
        words = {"no": entry["negation"].strip()} if isinstance(entry.get("negation"), str) else {}
        attributes.append(Attribute(name, BINARY_CLASSES, template=sentence.strip(), class_words=words))
    return attributes
