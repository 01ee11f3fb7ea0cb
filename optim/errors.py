"""The errors optim raises: each names what was wrong and what was expected."""

from __future__ import annotations

ECHO_LIMIT = 200


def clipped(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def shown(value, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, clipped: a user's 1 MB value must not come back whole."""
    return clipped(repr(value), limit)


class OptimError(ValueError):
    """Base class of optim's input errors (a ValueError, so callers may catch either)."""


class HyperparameterError(OptimError):
    """A hyperparameter, option or schedule parameter is unknown, of the wrong type or out of range.

    ``name`` is the offending field, ``allowed`` a description of what it accepts (for example
    ``"a number in [0, inf)"``), ``value`` what was given. ``errors`` lists every error found in
    the same call (this one first), so that a caller can report all bad fields at once.
    """

    def __init__(self, message: str, name: str | None = None, allowed: str | None = None, value=None):
        super().__init__(message)
        self.name = name
        self.allowed = allowed
        self.value = value
        self.errors = [self]


def attempt(errors: list, check, *args):
    """``check(*args)``, or None after appending its HyperparameterErrors to ``errors``."""
    try:
        return check(*args)
    except HyperparameterError as e:
        errors.extend(e.errors)
        return None


def raise_all(errors: list) -> None:
    """Raise the first of ``errors`` carrying all of them; nothing when there are none."""
    if errors:
        first = errors[0]
        first.errors = list(errors)
        raise first


class UnknownOptimizerError(OptimError):
    """``optim.create`` was given a name that no registered optimizer carries."""


class RegistryError(OptimError):
    """Registering an optimizer failed: a name clash or a class that is not an Optimizer."""


class StateDictError(OptimError):
    """A state dict cannot be loaded: wrong format or version, or it does not fit the parameters.

    ``missing`` lists parameter names the optimizer has but the state dict lacks, ``unexpected``
    names the state dict has but the optimizer lacks, ``reshaped`` entries
    ``(name, shape_in_state, shape_of_parameter)``, ``retyped`` entries ``(name, dtype_in_state,
    dtype_of_parameter)`` and ``regrouped`` entries ``(name, group_in_state, group_of_parameter)``.
    """

    def __init__(self, message: str, missing=(), unexpected=(), reshaped=(), retyped=(), regrouped=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.reshaped = list(reshaped)
        self.retyped = list(retyped)
        self.regrouped = list(regrouped)


class NonFiniteGradientError(FloatingPointError):
    """``step()`` met a NaN or infinite gradient under ``nonfinite="raise"``; ``names`` lists the
    parameters whose gradient has a non-finite entry. Nothing was updated."""

    def __init__(self, message: str, names=()):
        super().__init__(message)
        self.names = list(names)
