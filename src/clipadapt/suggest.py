"""'Did you mean ...?': the known name closest to a mistyped one, for every error message
that names an unknown key, format, column, class or data set."""

from __future__ import annotations

import difflib


def closest(name: str, known) -> str | None:
    """The known name most like `name` (case and spacing first, then spelling), or None.

    >>> closest("Weather ", ["weather", "glare"])
    'weather'
    """
    known = [str(k) for k in known]
    folded = {k.strip().lower(): k for k in known}
    if name.strip().lower() in folded:
        return folded[name.strip().lower()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known) -> str:
    """' Did you mean 'x'?' for the closest known name, or ''.

    >>> did_you_mean("gsss", ["gss", "folder"])
    " Did you mean 'gss'?"
    """
    best = closest(name, known)
    return f" Did you mean '{best}'?" if best is not None and best != name else ""
