"""The one error hierarchy of thinkgym.

Every error says three things: what was wrong, the value received, and how to fix
it. Build them with keyword arguments so the message has the same shape everywhere::

    >>> err = ConfigError("tick_budget must be >= 1", got=0, fix="pass tick_budget=32")
    >>> str(err)
    'tick_budget must be >= 1 (got 0). Fix: pass tick_budget=32'

Agent mistakes (malformed JSON, unknown tool) are *not* exceptions inside an
episode: environments turn them into an observation plus a documented penalty.
These classes are for programmer mistakes and for tool failures that an
environment catches and renders.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DependencyNotInstalled",
    "EnvStateError",
    "InvalidAction",
    "NumericalError",
    "RegistryError",
    "RewardError",
    "ThinkgymError",
    "ToolError",
    "ToolTimeout",
    "ToolValidationError",
    "VerifierError",
]  # the hierarchy; ``check_int_fields`` and ``config_from_kwargs`` below are helpers that
#   raise ConfigError

class _Missing:
    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "_MISSING"  # pickle by reference: the sentinel stays a singleton


_MISSING: Any = _Missing()


class ThinkgymError(Exception):
    """Base class: ``what`` was wrong, the value ``got``, and the ``fix``."""

    def __init__(self, what: str, *, got: Any = _MISSING, fix: str | None = None) -> None:
        self.what = what
        self.got = got
        self.fix = fix
        message = what
        if got is not _MISSING:
            message += f" (got {got!r})"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep errors picklable across async vector-env workers.
        return (_rebuild, (type(self), self.what, self.got, self.fix, self.__dict__))


def _rebuild(cls: type[ThinkgymError], what: str, got: Any, fix: str | None, state: dict) -> Any:
    err = cls.__new__(cls)
    ThinkgymError.__init__(err, what, got=got, fix=fix)
    err.__dict__.update(state)
    return err


class ConfigError(ThinkgymError, ValueError):
    """A configuration value breaks a rule. ``field`` names the offending field."""

    def __init__(
        self, what: str, *, field: str | None = None, got: Any = _MISSING, fix: str | None = None
    ) -> None:
        self.field = field
        prefix = f"{field}: " if field and not what.startswith(field) else ""
        super().__init__(prefix + what, got=got, fix=fix)


def check_int_fields(config: Any, minimums: dict[str, int]) -> None:
    """``ConfigError`` for the first field of ``config`` that is not an int >= its minimum.

    ``minimums`` maps field names to their least allowed value. Booleans are refused
    (``True`` is an ``int`` to Python). The fix suggests the field's class default.

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     steps: int = 10
        >>> check_int_fields(C(steps=0), {"steps": 1})
        Traceback (most recent call last):
        ...
        thinkgym.errors.ConfigError: steps: must be an int >= 1 (got 0). Fix: pass e.g. steps=10
    """
    for name, lo in minimums.items():
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            default = getattr(type(config), name, None)
            fix = f"pass e.g. {name}={default}" if isinstance(default, int) else \
                f"pass an int >= {lo}"
            raise ConfigError(f"must be an int >= {lo}", field=name, got=v, fix=fix)


def config_from_kwargs(config_cls: Any, owner: str, kwargs: dict[str, Any],
                       base: Any = None) -> Any:
    """``config_cls(**kwargs)`` (or ``dataclasses.replace(base, **kwargs)``), refusing unknown
    names with a ``ConfigError`` that lists the accepted ones.

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     steps: int = 10
        >>> config_from_kwargs(C, "Demo-v0", {"steps": 3})
        C(steps=3)
        >>> config_from_kwargs(C, "Demo-v0", {"step": 3})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        thinkgym.errors.ConfigError: unknown Demo-v0 argument(s) ['step'] ... use ['steps']
    """
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ConfigError(f"unknown {owner} argument(s) {unknown}", got=unknown,
                          fix=f"use {sorted(fields)}")
    return dataclasses.replace(base, **kwargs) if base is not None else config_cls(**kwargs)


class RegistryError(ThinkgymError, LookupError):
    """A name is missing from a registry, or registered twice."""


class InvalidAction(ThinkgymError, ValueError):
    """An action outside the action space was passed to ``step`` (a programmer error)."""


class EnvStateError(ThinkgymError, RuntimeError):
    """An environment was used out of order, e.g. ``step`` after the episode ended."""


class DependencyNotInstalled(ThinkgymError, ImportError):
    """An optional dependency is needed for this feature but is not installed."""


class CheckpointError(ThinkgymError, ValueError):
    """A checkpoint is missing, corrupt, or incompatible with the requested config."""


class NumericalError(ThinkgymError, FloatingPointError):
    """NaN or Inf appeared in a computation that must stay finite."""


class RewardError(ThinkgymError, RuntimeError):
    """A reward component raised; ``component`` names it. Never scored as a silent 0."""

    def __init__(self, what: str, *, component: str, got: Any = _MISSING, fix: str | None = None):
        self.component = component
        super().__init__(f"reward component {component!r}: {what}", got=got, fix=fix)


class VerifierError(RewardError):
    """A task verifier raised or returned something that is not a score; ``verifier`` names it.

    Never scored as a silent 0: a broken verifier would look like a weak agent.
    """

    def __init__(self, what: str, *, verifier: str, got: Any = _MISSING,
                 fix: str | None = None) -> None:
        self.verifier = verifier
        super().__init__(f"verifier {verifier!r} {what}", component="correctness", got=got,
                         fix=fix)


class ToolError(ThinkgymError, RuntimeError):
    """A tool call failed. Environments render it as an observation, never a crash."""

    def __init__(self, what: str, *, tool: str | None = None, got: Any = _MISSING,
                 fix: str | None = None) -> None:
        self.tool = tool
        prefix = f"tool {tool!r}: " if tool else ""
        super().__init__(prefix + what, got=got, fix=fix)


class ToolValidationError(ToolError):
    """Arguments to a tool failed its JSON schema."""


class ToolTimeout(ToolError):
    """A tool call exceeded its wall-clock timeout."""
