"""Name -> factory registries (methods, data formats), so users can add their own."""

from __future__ import annotations

import difflib
import warnings
from typing import Callable, Generic, Iterator, TypeVar

from clipadapt.errors import ClipAdaptError, ClipAdaptWarning

T = TypeVar("T")


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
        def add(item: T) -> T:
            if name in self._items and not overwrite:
                raise ClipAdaptError(f"{self.kind} '{name}' is already registered; pass overwrite=True to replace it.")
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        if name in self._aliases:
            current = self._aliases[name]
            warnings.warn(f"{self.kind} '{name}' is now called '{current}'; using it. Write '{current}' in new "
                          "configs.", ClipAdaptWarning, stacklevel=2)
            return self._items[current]
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ClipAdaptError(
                f"Unknown {self.kind} '{name}'.{hint} Known: {', '.join(sorted(self._items))}."
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


FactoryRegistry = Registry[Callable[..., object]]
