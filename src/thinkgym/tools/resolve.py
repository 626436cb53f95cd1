"""Anything -> Tool: the one place where user tool specs become thinkgym tools.

Every tool-using environment accepts the same kinds of tool spec, mixed freely:

* a **name** (``"calculator"``): looked up in the env's own tools first, then in
  :data:`~thinkgym.tools.TOOLS` (a miss lists the known names, with did-you-mean);
* a **Tool** (anything satisfying :class:`thinkgym.protocols.Tool`: a
  :class:`~thinkgym.tools.FunctionTool`, a :class:`~thinkgym.tools.FallbackTool`, your
  own class): used as is, with its own timeout and retry policy;
* a **LangChain** ``BaseTool`` (a ``@tool`` function, a ``StructuredTool``): wrapped
  by :func:`~thinkgym.tools.from_langchain` (pydantic schema, ``ToolException`` as a
  ToolError);
* a **plain typed function**: wrapped in a FunctionTool (schema from the signature
  and the docstring's ``Args:`` section).

Wrapped specs (functions and LangChain tools) get ``timeout`` seconds per call, so a
hanging user tool becomes a :class:`~thinkgym.errors.ToolTimeout` observation.

    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> tools = resolve_tools(["calculator", add])
    >>> sorted(tools), tools["add"](a=2, b=3)
    (['add', 'calculator'], '5')
    >>> resolve_tools([42])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    thinkgym.errors.ConfigError: tools[0]: unsupported tool object of type int ...
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from thinkgym.errors import ConfigError
from thinkgym.protocols import Tool
from thinkgym.registry import Registry

__all__ = ["ACCEPTED_TOOL_TYPES", "ToolSpec", "build_tool_set", "resolve_tool", "resolve_tools"]

ToolSpec = str | Tool | Callable[..., Any]
"""A registered name, a Tool, a LangChain ``BaseTool`` or a plain typed function."""

ACCEPTED_TOOL_TYPES = ("a registered tool name (str)", "a thinkgym Tool (e.g. FunctionTool)",
                       "a LangChain BaseTool (e.g. a @tool function)",
                       "a plain function with type hints")


def _is_langchain_tool(obj: Any) -> bool:
    # A LangChain tool can only exist if langchain_core was imported: no import here.
    if "langchain_core.tools" not in sys.modules:
        return False
    return isinstance(obj, sys.modules["langchain_core.tools"].BaseTool)


def _describe(obj: Any) -> str:
    name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
    kind = type(obj).__name__
    return f"{kind} {name!r}" if isinstance(name, str) else kind


def resolve_tool(spec: Any, *, builtin: Mapping[str, Tool] | None = None,
                 registry: Registry[Tool] | None = None, timeout: float | None = None,
                 where: str = "tools") -> Tool:
    """One tool from one spec (see the module doc for the accepted kinds).

    Args:
        spec: The spec.
        builtin: The env's own tools, searched first for names.
        registry: Searched next for names (default :data:`~thinkgym.tools.TOOLS`).
        timeout: Seconds per call for wrapped functions and LangChain tools.
        where: How error messages name the spec, e.g. ``"extra_tools[2]"``.

    Raises:
        ConfigError: an unknown name (listing the known ones) or an unsupported object.
    """
    from thinkgym.tools.base import FunctionTool

    if isinstance(spec, str):
        if builtin and spec in builtin:
            return builtin[spec]
        if registry is None:
            from thinkgym.tools.registry import TOOLS

            registry = TOOLS
        if spec in registry:
            return registry.get(spec)
        known = sorted({*registry.names(), *(builtin or {})})
        close = difflib.get_close_matches(spec, known, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown tool {spec!r}{hint} Known tools: {', '.join(known)}",
                          field=where, got=spec,
                          fix="pass a known tool name, or the tool object itself")
    if _is_langchain_tool(spec):
        from thinkgym.tools.langchain import from_langchain

        return from_langchain(spec, timeout=timeout)
    if isinstance(spec, Tool):
        return spec
    if inspect.isroutine(spec) or isinstance(spec, functools.partial):
        try:
            return FunctionTool(spec, timeout=timeout)
        except ConfigError as exc:
            raise ConfigError(f"cannot make a tool of {_describe(spec)}: {exc}", field=where,
                              got=spec, fix=exc.fix) from exc
    raise ConfigError(f"unsupported tool object of type {type(spec).__name__}", field=where,
                      got=spec, fix="pass " + "; or ".join(ACCEPTED_TOOL_TYPES))


def resolve_tools(specs: Iterable[Any] | None, *, builtin: Mapping[str, Tool] | None = None,
                  registry: Registry[Tool] | None = None, timeout: float | None = None,
                  field: str = "tools") -> dict[str, Tool]:
    """Tools by name from a list of specs; two tools with one name raise, naming both."""
    if specs is None:
        return {}
    if isinstance(specs, str | bytes) or not isinstance(specs, Iterable) or isinstance(
            specs, Mapping):
        raise ConfigError("must be a list of tools", field=field, got=specs,
                          fix=f"pass e.g. {field}=['calculator', my_function]")
    out: dict[str, Tool] = {}
    where_of: dict[str, str] = {}
    for i, spec in enumerate(specs):
        where = f"{field}[{i}]"
        made = resolve_tool(spec, builtin=builtin, registry=registry, timeout=timeout,
                            where=where)
        if made.name in out:
            raise ConfigError(f"two tools are called {made.name!r}: {where_of[made.name]} "
                              f"({_describe(out[made.name])}) and {where} ({_describe(spec)})",
                              field=field, got=made.name,
                              fix="give one a new name, e.g. FunctionTool(fn, name='other')")
        out[made.name] = made
        where_of[made.name] = where
    return out


def build_tool_set(builtin: Mapping[str, Tool], tools: Iterable[Any] | None = None,
                   extra_tools: Iterable[Any] | None = None, *, env: str,
                   timeout: float | None = None, reserved: Mapping[str, str] | None = None,
                   ) -> dict[str, Tool]:
    """An env's tool set: ``tools`` replaces ``builtin`` (names in it may pick built-ins),
    ``extra_tools`` adds to the result.

    Args:
        builtin: The env's own tools by name (empty if it has none).
        tools: Replaces the built-in set when given (None keeps it).
        extra_tools: Added to the set; a name already in it raises, naming both.
        env: The env id, for messages.
        timeout: Seconds per call for wrapped functions and LangChain tools.
        reserved: Names no tool may take, with what holds them (e.g. an action tag).
    """
    base = dict(builtin) if tools is None else resolve_tools(tools, builtin=builtin,
                                                              timeout=timeout, field="tools")
    extra = resolve_tools(extra_tools, timeout=timeout, field="extra_tools")
    for name, made in extra.items():
        if name in base:
            origin = "built-in tool" if base[name] is builtin.get(name) else "tool from tools="
            raise ConfigError(
                f"extra_tools: {_describe(made)} clashes with the {origin} {name!r} of {env} "
                f"({_describe(base[name])})", field="extra_tools", got=name,
                fix="rename yours, e.g. FunctionTool(fn, name='my_" + name + "'), or pass "
                    "tools=[...] to replace the env's tool set")
    merged = {**base, **extra}
    for name, holder in (reserved or {}).items():
        if name in merged:
            raise ConfigError(f"tool {_describe(merged[name])} clashes with {env}'s built-in "
                              f"{name!r} ({holder})", field="tools", got=name,
                              fix=f"rename yours, e.g. FunctionTool(fn, name='my_{name}')")
    return merged
