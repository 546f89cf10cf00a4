"""Global StreetScapes: the eight attributes, their classes and prompts (SPEC section 1)."""

from __future__ import annotations

from clipadapt.task import Attribute

# attribute -> (prompt template, classes as in the labels, class-name -> prompt words)
GSS_SCHEMA: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "glare": ("a photo with {}.", ("no", "yes"), {"yes": "glare", "no": "no glare"}),
    "lighting_condition": ("a photo taken during {}.", ("day", "dusk/dawn", "night"), {"dusk/dawn": "twilight"}),
    "pano_status": ("a {} photo.", ("false", "true"), {"true": "panoramic", "false": "non-panoramic"}),
    "platform": (
        "a photo taken on {}.",
        ("cycling surface", "driving surface", "fields", "railway", "tunnel", "walking surface"),
        {},
    ),
    "quality": ("a photo of {} quality.", ("good", "slightly poor", "very poor"), {}),
    "reflection": ("a photo with {}.", ("no", "yes"), {"yes": "reflection", "no": "no reflection"}),
    "view_direction": ("a photo captured {} the road.", ("front/back", "side"), {"front/back": "along", "side": "across"}),
    "weather": ("a photo in {} weather.", ("clear", "cloudy", "foggy", "rainy", "snowy"), {}),
}

GSS_ATTRIBUTES: tuple[str, ...] = tuple(sorted(GSS_SCHEMA))


def gss_attribute(name: str, classes: tuple[str, ...]) -> Attribute:
    """The Attribute for a GSS column, with the paper's template and class words.

    `classes` are the classes found in the train split (the run's label map), which
    may be a subset of the full list.
    """
    template, _, words = GSS_SCHEMA[name]
    return Attribute(name=name, classes=tuple(classes), template=template, class_words=dict(words))
