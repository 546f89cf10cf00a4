"""Name -> factory registries (methods, data formats), so users can add their own.

An entry may be the object itself or where it lives (`register_at`, "package.module:
attribute", as timm keeps its entry points): the name is known at once and the module is
imported on the first `get`, so code that only checks names imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
import warnings
from typing import Generic, Iterator, TypeVar

from clipadapt.errors import ClipAdaptError, ClipAdaptWarning
from clipadapt.suggest import did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class _Location:
    module: str
    attribute: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"


class Registry(Generic[T]):
    """A named collection of factories; `register` is usable as a decorator.

    >>> reg = Registry("colour")
    >>> @reg.register("red")
    ... def make_red(): return "red"
    >>> reg.get("red")()
    'red'
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # former name -> current name

    def alias(self, former: str, current: str) -> None:
        """Keep a renamed entry reachable under its former name, so saved runs and configs
        that use it still load (each lookup by the former name says what it is called now).

        >>> reg = Registry("colour")
        >>> _ = reg.register("crimson", "red")
        >>> reg.alias("red", "crimson")
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     reg.get("red")
        'red'
        """
        if current not in self._items:
            raise ClipAdaptError(f"Cannot alias {self.kind} '{former}' to '{current}': '{current}' is not registered.")
        if former in self._items:
            raise ClipAdaptError(f"{self.kind} '{former}' is registered; an alias cannot shadow it.")
        self._aliases[former] = current

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Add `obj` under `name` (as a decorator when `obj` is left out)."""
        def add(item: T) -> T:
            if name in self._items and not overwrite:
                raise ClipAdaptError(f"{self.kind} '{name}' is already registered; pass overwrite=True to replace it.")
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def register_at(self, name: str, location: str, *, overwrite: bool = False) -> None:
        """Add the object at `location`, "package.module:attribute", imported on the first
        `get` (until then only its name is known).

        >>> reg = Registry("joiner")
        >>> reg.register_at("join", "os.path:join")
        >>> reg.get("join")("a", "b") == __import__("os").path.join("a", "b")
        True
        """
        module, _, attribute = location.partition(":")
        if not module or not attribute:
            raise ClipAdaptError(f"{self.kind} '{name}': a location is written 'package.module:attribute', "
                                 f"got '{location}'.")
        if name in self._items and not overwrite:
            raise ClipAdaptError(f"{self.kind} '{name}' is already registered; pass overwrite=True to replace it.")
        self._items[name] = _Location(module, attribute)

    def get(self, name: str) -> T:
        if name in self._aliases:
            current = self._aliases[name]
            warnings.warn(f"{self.kind} '{name}' is now called '{current}'; using it. Write '{current}' in new "
                          "configs.", ClipAdaptWarning, stacklevel=2)
            return self._resolve(current)
        if name not in self._items:
            raise ClipAdaptError(f"Unknown {self.kind} '{name}'.{did_you_mean(name, self._items)} "
                                 f"Known: {', '.join(sorted(self._items))}.")
        return self._resolve(name)

    def _resolve(self, name: str) -> T:
        """The entry, importing it the first time when it was registered by location."""
        item = self._items[name]
        if isinstance(item, _Location):
            try:
                item = getattr(importlib.import_module(item.module), item.attribute)
            except (ImportError, AttributeError) as exc:
                raise ClipAdaptError(f"{self.kind} '{name}' is registered at '{self._items[name]}', which cannot be "
                                     f"imported ({exc}). Fix the location or reinstall clipadapt.") from None
            self._items[name] = item
        return item

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
