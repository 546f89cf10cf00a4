"""Can the backbone tell an attribute's classes apart by their text? Checked before a run.

A method whose classifier comes from text (zero-shot, CLIP-Adapter, CoOp, CLIP-MHAdapter,
microCLIP) scores every image by its cosine to each class's text embedding. When two
classes' prompts encode to the same vector, every image gets the same score for both and
no amount of training on the image side can separate them: the loss stays at ln K and the
run ends at chance. That happens whenever the prompts differ only in words the text
encoder never learned, e.g. every word outside the embedded tiny CLIP's training captions
(its token embedding rows for those words are all zero), so such runs are refused up front
with the classes, the unknown words and what to do.

Two classes are indistinguishable when
- their text embeddings have cosine >= SAME_TEXT_COSINE, or
- their prompts are the same once the words the backbone never learned are taken out
  (they then differ only in how many unknown tokens they hold: a length, not a meaning).

SAME_TEXT_COSINE, measured on the embedded clipadapt-tiny (scripts: see
docs/reliability.md): prompts that differ only in unseen words give 1 - 6e-8; the closest
pair of genuinely different prompts over its 207 known whole words in four templates
("a photo of a {}.", "{}", "a {} bird.", "a photo in {} weather.", 85k pairs) gives
0.99991, and the demos' closest class prompts 0.9945 ("A pedestrian (not) wearing ankle or
knee boots"). 1 - 1e-5 sits nine times closer to 1 than the former and 170 times further
than the latter.

PromptPAR is not checked: each attribute has its own output weights in the fusion head
and its own learned text context, so attributes whose sentences coincide still train
apart (their shared sentence only starts them from the same query).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError

SAME_TEXT_COSINE = 1.0 - 1e-5
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*", re.UNICODE)


@dataclass(frozen=True)
class TextCollision:
    """Classes of one attribute that the backbone's text side cannot tell apart."""

    attribute: str
    classes: tuple[str, ...]
    cosine: float  # the highest cosine between their text embeddings
    unknown_words: tuple[str, ...]  # their words the backbone never learned (embedded model)

    def describe(self) -> str:
        unknown = f"; words it never learned: {', '.join(self.unknown_words)}" if self.unknown_words else ""
        return f"attribute '{self.attribute}': classes {', '.join(self.classes)} (text cosine {self.cosine:.4f}{unknown})"


def untrained_token_ids(backbone) -> set[int]:
    """Token ids whose input embedding is all zero: never trained. The embedded tiny CLIP
    ships its ~235 trained rows only (the others are zeroed); a real CLIP has none."""
    weight = backbone.text_token_embedding.weight.detach()
    return set((weight.abs().sum(dim=1) == 0).nonzero().flatten().tolist())


def _token_ids(backbone, sentences: list[str]) -> list[list[int]]:
    """Token ids of each sentence, start and end markers and padding dropped."""
    rows = backbone.tokenize(sentences)
    out = []
    for row in rows.tolist():
        end = row.index(max(row))  # open_clip's convention: the end-of-text id is the largest
        out.append(row[1:end])
    return out


def unknown_words(backbone, text: str, untrained: set[int] | None = None) -> list[str]:
    """The words of `text` that hold a token the backbone never learned (in order, once each)."""
    untrained = untrained_token_ids(backbone) if untrained is None else untrained
    if not untrained:
        return []
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    if not words:
        return []
    return [w for w, ids in zip(words, _token_ids(backbone, words)) if any(i in untrained for i in ids)]


def known_words(backbone) -> list[str] | None:
    """Whole words the backbone's text side learned, or None when it learned them all
    (a real CLIP): for the embedded tiny CLIP, the vocabulary of its training captions."""
    untrained = untrained_token_ids(backbone)
    if not untrained:
        return None
    from open_clip.tokenizer import SimpleTokenizer

    decoder = SimpleTokenizer().decoder
    weight_rows = backbone.text_token_embedding.weight.shape[0]
    return sorted(decoder[i][:-4] for i in range(min(weight_rows, len(decoder)))
                  if i not in untrained and decoder[i].endswith("</w>") and decoder[i][:-4].isalpha())


def _skeleton(ids: list[int], untrained: set[int]) -> tuple[int, ...]:
    """Token ids with every run of never-learned tokens collapsed into one -1."""
    out: list[int] = []
    for i in ids:
        if i in untrained:
            if not out or out[-1] != -1:
                out.append(-1)
        else:
            out.append(i)
    return tuple(out)


def _groups(pairs: list[tuple[int, int]], count: int) -> list[list[int]]:
    """Connected classes (union-find over the indistinguishable pairs), each sorted."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    found: dict[int, list[int]] = {}
    for i in range(count):
        found.setdefault(root(i), []).append(i)
    return [g for g in found.values() if len(g) > 1]


@torch.no_grad()
def text_collisions(method) -> list[TextCollision]:
    """Groups of classes that `method`'s text classifier cannot tell apart (empty when all
    are distinct, or when the method's classifier does not come from text)."""
    features = method.text_classifier_rows()
    if features is None:
        return []
    backbone = method.backbone
    untrained = untrained_token_ids(backbone)
    sentences = method.class_sentences()
    found = []
    for a, attr in enumerate(method.task.attributes):
        text = F.normalize(features[a].detach().float(), dim=-1)
        cos = (text @ text.t()).cpu()
        per_class = sentences[a]
        skeletons = None
        if untrained:  # only a text side with never-learned tokens (the embedded model) needs them
            ids = iter(_token_ids(backbone, [s for group in per_class for s in group]))
            skeletons = [tuple(_skeleton(next(ids), untrained) for _ in group) for group in per_class]
        k = attr.num_classes
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)
                 if cos[i, j] >= SAME_TEXT_COSINE or (skeletons is not None and skeletons[i] == skeletons[j])]
        for group in _groups(pairs, k):
            worst = max(float(cos[i, j]) for i in group for j in group if i < j)
            words = list(dict.fromkeys(w for i in group for w in unknown_words(backbone, attr.words(attr.classes[i]),
                                                                                   untrained)))
            found.append(TextCollision(attr.name, tuple(attr.classes[i] for i in group), worst, tuple(words)))
    return found


def collision_message(method, collisions: list[TextCollision]) -> str:
    """One line: which classes the text cannot separate, why, and what to do."""
    bb = method.backbone
    weights = bb.pretrained or "random weights"
    names = "; ".join(c.describe() for c in collisions)
    first = collisions[0]
    example = ", ".join(f"{c}: <words>" for c in first.classes[:2])
    why = ""
    if any(c.unknown_words for c in collisions):
        captions = " (street scenes, weather, pedestrians, birds)" if bb.pretrained == "embedded" else ""
        why = (f" {bb.name} ({weights}) knows only the words of its training captions{captions}, listed in "
               "docs/reliability.md.")
    return (f"{method.name} cannot tell classes apart by their text under backbone {bb.name} ({weights}): {names}. "
            "Their prompts give the same text embedding, or differ only in words the model never learned, so every "
            f"image scores alike for them: predictions among them are blind and training cannot separate them.{why} Fix: give the classes words "
            f"the model knows (data.class_words: {{{first.attribute}: {{{example}}}}} or data.templates), use a real "
            "CLIP (e.g. backbone.name=ViT-B-16 backbone.pretrained=openai, or a local weights file), or a method that "
            "does not read class names (method.name=linear_probe).")


@dataclass(frozen=True)
class UnknownWords:
    """Words of one attribute's classes that the backbone never learned."""

    attribute: str
    per_class: tuple[tuple[str, tuple[str, ...]], ...]  # (class, its unknown words), classes in order

    def describe(self, most: int = 8) -> str:
        """'attribute 'a': c1 (w1, w2), c2 (w3)', the first `most` classes (a benchmark may have 100)."""
        named = ", ".join(f"{c} ({', '.join(w)})" for c, w in self.per_class[:most])
        more = f" and {len(self.per_class) - most} more classes" if len(self.per_class) > most else ""
        return f"attribute '{self.attribute}': {named}{more}"


def reads_class_names(method) -> bool:
    """True when `method`'s classifier is built from the class names' text (zero-shot,
    CLIP-Adapter, CoOp, CLIP-MHAdapter, microCLIP); False for linear probe and majority."""
    with torch.no_grad():
        return method.text_classifier_rows() is not None


def unknown_class_words(method) -> list[UnknownWords]:
    """Per attribute, the classes whose words hold a token the backbone never learned. Empty
    on a real CLIP (it learned every token) and for methods that do not read class names.
    Sentence attributes (multi-label) are left out: their two classes are the sentence and
    its negation, told apart by "not", a word every backbone knows."""
    backbone = method.backbone
    untrained = untrained_token_ids(backbone)
    if not untrained or not reads_class_names(method):  # the cheap test first: a real CLIP stops here
        return []
    found = []
    for attr in (a for a in method.task.attributes if not a.is_sentence):
        per_class = tuple((c, tuple(w)) for c in attr.classes if (w := unknown_words(backbone, attr.words(c), untrained)))
        if per_class:
            found.append(UnknownWords(attr.name, per_class))
    return found


MAX_LISTED = 6  # attributes named in the unknown-words line; the rest are counted, to keep it one line


def unknown_words_message(method, found: list[UnknownWords]) -> str:
    """One line: the classes whose words the backbone never learned, and the fix."""
    bb = method.backbone
    weights = bb.pretrained or "random weights"
    listed = "; ".join(u.describe() for u in found[:MAX_LISTED])
    if len(found) > MAX_LISTED:
        listed += f"; and {len(found) - MAX_LISTED} more attributes"
    example = ", ".join(f"{c}: <words>" for c, _ in found[0].per_class[:2])
    fix = f"data.class_words: {{{found[0].attribute}: {{{example}}}}}"
    return (f"{method.name} reads class names, but backbone {bb.name} ({weights}) never learned some of their words: "
            f"{listed}. A word the model never learned adds nothing to a prompt, so these classes are scored by the "
            "rest of their prompt alone: zero-shot guesses them blind and training starts from text that does not "
            f"name them. Fix: give them words the model knows ({fix}; its words are listed in docs/reliability.md), "
            "use a real CLIP (e.g. backbone.name=ViT-B-16 backbone.pretrained=openai, or a local weights file), or a "
            "method that does not read class names (method.name=linear_probe).")


def check_class_texts(method, stop: bool = True, name_unknown: bool = False) -> list[str]:
    """Refuse (ClipAdaptError) a run whose classes the text classifier cannot tell apart;
    with `stop=False` (zero-shot, which has nothing to lose) return the message instead.
    `name_unknown`: when the classes are told apart, still return a warning naming the
    class words the backbone never learned (one unknown word among known ones does not
    collide, yet leaves its class blind)."""
    collisions = text_collisions(method)
    if not collisions:
        found = unknown_class_words(method) if name_unknown else []
        return [unknown_words_message(method, found)] if found else []
    message = collision_message(method, collisions)
    if stop:
        raise ClipAdaptError(message)
    return [message]
