"""The one error type of initlab and the one template its messages follow.

Every message says what was wrong, what is accepted, what was received and how to fix it, in that order,
so that a user reading only the last line of a traceback can act on it (the habit we take from Equinox and
scikit-learn).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["InitlabError", "TrainingDiverged", "fail", "unknown_name"]


class InitlabError(ValueError):
    """Bad input to initlab: an unknown name, a wrong shape, a corrupt file, a bad config.

    It is a ``ValueError`` so that code written against ``torch.nn.init`` (which raises ``ValueError``)
    keeps working.
    """


class TrainingDiverged(RuntimeError):
    """Raised by a monitor told to stop on a finding (``stop_on=("nan",)``); carries that finding."""

    def __init__(self, message: str, finding: object = None) -> None:
        super().__init__(message)
        self.finding = finding


def fail(problem: str, *, accepted: str | None = None, received: object = None, fix: str | None = None) -> InitlabError:
    """Build an :class:`InitlabError` from the template ``problem. Accepted: … Received: … fix``.

    >>> str(fail("negative scale", accepted="a number > 0", received=-1.0, fix="Pass scale=1.0."))
    'negative scale. Accepted: a number > 0. Received: -1.0. Pass scale=1.0.'
    """
    parts = [problem.rstrip(".") + "."]
    if accepted is not None:
        parts.append(f"Accepted: {accepted}.")
    if received is not None:
        parts.append(f"Received: {received!r}.")
    if fix is not None:
        parts.append(fix)
    return InitlabError(" ".join(parts))


def unknown_name(kind: str, name: object, choices: Iterable[str], *, see: str | None = None) -> InitlabError:
    """An error for a name that is not one of ``choices``, with the closest valid names.

    >>> str(unknown_name("activation", "rleu", ["relu", "tanh", "elu"]))
    "unknown activation 'rleu'. Did you mean 'relu'? Accepted: elu, relu, tanh."
    """
    options = sorted(set(choices))
    close = difflib.get_close_matches(str(name).lower(), options, n=3, cutoff=0.6)
    parts = [f"unknown {kind} {name!r}."]
    if close:
        parts.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
    if see is not None:
        parts.append(see)
    else:
        parts.append("Accepted: " + ", ".join(options) + ".")
    return InitlabError(" ".join(parts))
