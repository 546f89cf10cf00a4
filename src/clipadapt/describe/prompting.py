"""The question put to the language model, and a forgiving reader of its answer.

The descriptions end up as CLIP text prompts (microCLIP's heads average their
embeddings), so the prompt asks for what CLIP can see: short sentences about visible,
distinguishing features, each naming the class (CuPL's sentences name it too, and the
name carries much of CLIP's zero-shot signal). Models ignore formatting instructions
often enough that the parser, not the prompt, is what guarantees clean sentences.
"""

from __future__ import annotations

import json
import re

__all__ = ["build_messages", "display_name", "parse_descriptions"]

SYSTEM_PROMPT = (
    "You write short, factual visual descriptions used as text prompts for an image classifier. "
    "Describe only what can be seen in a photograph."
)


def display_name(class_name: str) -> str:
    """How a class is written in the prompt: folder-style underscores become spaces."""
    return " ".join(class_name.replace("_", " ").split())


def build_messages(class_name: str, per_class: int, domain: str | None = None) -> list[dict]:
    """Chat messages asking for `per_class` visual descriptions of one class.

    `domain` (e.g. "bird species") tells the model what kind of thing the class is and
    what it must be told apart from, which matters for ambiguous names ("crane",
    "jaguar", "mustang").
    """
    name = display_name(class_name)
    kind = f" ({domain.strip()})" if domain and domain.strip() else ""
    peers = f"other {domain.strip()}" if domain and domain.strip() else "similar-looking things"
    user = (
        # No article before the name: "a" vs "an" would be wrong half the time.
        f"Write {per_class} different short descriptions of what {name}{kind} looks like in a photo.\n"
        f"Each description must:\n"
        f"- mention \"{name}\" by name;\n"
        f"- describe a visual feature that tells {name} apart from {peers} "
        f"(shape, colour, markings, texture, parts, size or typical setting);\n"
        f"- be one sentence of at most 25 words.\n"
        f"Put one description per line, with no numbering, bullets, headings or other text."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# Reasoning models served through OpenAI-compatible servers (vLLM, Ollama) may put their
# chain of thought in the content inside <think> tags: it is not part of the answer.
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
# Bullets and list numbering: "-", "*", "•", "1.", "2)", "(3)", "4:", "5 -", "#1", "a)".
# Numbering must be followed by a space so that "1.5 m long" or "3-toed" survive.
_MARKER = re.compile(r"^\s*(?:[-*•·–—+>]+|(?:#?\d{1,3}\s*[.):\]-]|\(\d{1,3}\)|\[\d{1,3}\]|[a-zA-Z][.)])(?=\s|$))\s*")
# Chatty framing lines the model adds despite being told not to.
_PREAMBLE = re.compile(r"^(sure|certainly|of course|here (are|is)|below (are|is)|okay|ok)\b", re.IGNORECASE)


def parse_descriptions(text: str, per_class: int | None = None) -> list[str]:
    """Sentences from a model's answer: one per line, with bullets, numbering, markdown
    emphasis, quotes, headings and chatty framing removed, blanks and case-insensitive
    duplicates dropped, at most `per_class` kept (all when None).

    An answer that is a JSON list of strings is read as that list.

    >>> parse_descriptions("Here are two:\\n1. A cat has whiskers.\\n- **A cat** has a tail.\\n")
    ['A cat has whiskers.', 'A cat has a tail.']
    """
    text = _THINK.sub("", text or "")
    lines = _json_list(text)
    if lines is None:
        lines = text.splitlines()
    out: list[str] = []
    seen: set[str] = set()
    for raw in lines:
        line = _clean(raw)
        if not line:
            continue
        key = line.casefold()
        if key in seen:
            continue
        seen.add(key)
        out.append(line)
        if per_class is not None and len(out) >= per_class:
            break
    return out


def _json_list(text: str) -> list[str] | None:
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    if fenced:
        stripped = fenced.group(1)
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _clean(line: str) -> str:
    line = line.strip()
    if not line or line.startswith("```") or (line.startswith("#") and not re.match(r"#\d", line)):
        return ""  # code fences and markdown headings
    # Strip repeatedly: "1. - foo" and "- 1) foo" both occur.
    for _ in range(3):
        new = _MARKER.sub("", line, count=1)
        if new == line:
            break
        line = new
    line = line.replace("**", "").replace("__", "").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'“”`":
        line = line[1:-1].strip()
    if not re.search(r"[^\W\d_]", line):
        return ""  # nothing but digits and punctuation: a separator, not a sentence
    if line.endswith(":") or _PREAMBLE.match(line):
        return ""
    return line
