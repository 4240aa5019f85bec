"""User-facing errors: one clear line naming the problem and the fix, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LabError(Exception):
    """An error the user caused and can fix. The CLI prints it on one line and exits 2."""

    exit_code = 2


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' if nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def hub_error(what: str, e: Exception) -> LabError:
    """The one message for a benchmark that could not be loaded from the hub."""
    first = str(e).splitlines()[0] if str(e) else ""
    return LabError(
        f"could not load '{what}' from the hub ({type(e).__name__}: {first}); check the "
        "network or use task.source: local"
    )
