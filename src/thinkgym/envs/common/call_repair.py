"""Parse the JSON inside one ``<tool_call>`` tag, repairing the common slips first.

Strict ``json.loads`` is tried first. If it fails, the text rules below run in
order; each rule changes the text only when its slip is present, and the names of
the rules that changed something are returned as ``repairs`` (so the env can log
them and the format reward can notice them). Then a few structural rules fix the
shape of the decoded object. If the JSON still does not decode, or the object is
not ``{"name": str, "arguments": object}``, :func:`parse_tool_call` returns a
:class:`CallParseError` whose ``problem`` names what was wrong (the env renders it
as a corrective observation).

Text rules (only outside string literals, except where a rule is about strings):

===================  ============================================  ==================
rule                 slip                                          example
===================  ============================================  ==================
code_fence           JSON wrapped in a Markdown code fence         ```json {..} ```
smart_quotes         typographic quotes                            “name”
single_quotes        single-quoted strings                         {'name': 'x'}
python_literals      Python ``True`` / ``False`` / ``None``        {"a": True}
unquoted_keys        bare identifiers as keys                      {name: "x"}
trailing_commas      a comma before ``}`` or ``]``                 {"a": 1,}
missing_closers      unclosed ``{`` / ``[`` at the end             {"a": {"b": 1}
surrounding_text     prose before or after the object             Call: {..} thanks
===================  ============================================  ==================

Structural rules (on the decoded value):

===================  ============================================================
rule                 slip
===================  ============================================================
single_item_list     ``[{...}]`` instead of ``{...}``
function_wrapper     OpenAI style ``{"type": "function", "function": {...}}``
key_aliases          ``tool``/``function``/``tool_name`` for ``name``;
                     ``parameters``/``args``/``params``/``input`` for ``arguments``
arguments_as_string  ``"arguments": "{\\"query\\": \\"x\\"}"`` (JSON inside a string)
missing_arguments    no ``arguments`` key (taken as ``{}``)
===================  ============================================================

    >>> parse_tool_call('{"name": "search_product", "arguments": {"query": "mug"}}')
    ParsedCall(name='search_product', arguments={'query': 'mug'}, repairs=())
    >>> parse_tool_call("{'name': 'calculator', 'arguments': {'expression': '2+2',},}")
    ParsedCall(name='calculator', arguments={'expression': '2+2'}, repairs=('single_quotes', \
'trailing_commas'))
    >>> parse_tool_call('search for mugs').problem
    'the text inside <tool_call> is not JSON (no "{" found)'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "STRUCTURE_RULES",
    "TEXT_RULES",
    "CallParseError",
    "ParsedCall",
    "parse_tool_call",
    "repair_json",
]


@dataclass(frozen=True)
class ParsedCall:
    """A tool call decoded from the agent's text."""

    name: str
    arguments: dict[str, Any]
    repairs: tuple[str, ...] = ()
    """Repair rules that were needed (empty when the JSON was valid as written)."""


@dataclass(frozen=True)
class CallParseError:
    """A ``<tool_call>`` body that could not be turned into a call."""

    problem: str
    """What was wrong, in words the agent can act on."""
    repairs: tuple[str, ...] = ()
    """Repair rules tried (they changed the text but did not make it decode)."""


# -- a small lexer: string literals vs everything else ----------------------------------
def _segments(text: str) -> Iterator[tuple[str, str]]:
    """Split into ``("dq"|"sq"|"code", text)``; quotes keep their delimiters."""
    i, start, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            if i > start:
                yield "code", text[start:i]
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            end = min(j + 1, n)
            yield ("dq" if ch == '"' else "sq"), text[i:end]
            i = start = end
        else:
            i += 1
    if start < n:
        yield "code", text[start:]


def _map_code(text: str, fn: Callable[[str], str]) -> str:
    return "".join(fn(t) if kind == "code" else t for kind, t in _segments(text))


# -- text rules ----------------------------------------------------------------------------
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def code_fence(text: str) -> str:
    """Remove a Markdown code fence around the JSON."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


_SMART_QUOTES = str.maketrans("“”„‘’", '"""' + "''")  # 3 double quotes, then 2 single


def smart_quotes(text: str) -> str:
    """Typographic double/single quotes -> ASCII quotes."""
    return text.translate(_SMART_QUOTES)


def single_quotes(text: str) -> str:
    """``'text'`` -> ``"text"`` (escaping inner double quotes, unescaping ``\\'``)."""
    out = []
    for kind, t in _segments(text):
        if kind == "sq":
            body = t[1:-1] if len(t) >= 2 and t.endswith("'") else t[1:]
            body = body.replace("\\'", "'").replace('"', '\\"')
            t = f'"{body}"'
        out.append(t)
    return "".join(out)


_PY_LITERALS = re.compile(r"\b(True|False|None)\b")


def python_literals(text: str) -> str:
    """Python ``True``/``False``/``None`` -> JSON ``true``/``false``/``null``."""
    table = {"True": "true", "False": "false", "None": "null"}
    return _map_code(text, lambda t: _PY_LITERALS.sub(lambda m: table[m.group(1)], t))


_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_-]*)(\s*:)")


def unquoted_keys(text: str) -> str:
    """``{name: "x"}`` -> ``{"name": "x"}``."""
    return _map_code(text, lambda t: _BARE_KEY.sub(r'\1"\2"\3', t))


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def trailing_commas(text: str) -> str:
    """Drop a comma right before a closing brace or bracket."""
    return _map_code(text, lambda t: _TRAILING_COMMA.sub(r"\1", t))


def missing_closers(text: str) -> str:
    """Append the ``}`` / ``]`` that unclosed openers need (only if nesting is consistent)."""
    stack: list[str] = []
    pairs = {"{": "}", "[": "]"}
    for kind, t in _segments(text):
        if kind != "code":
            continue
        for ch in t:
            if ch in pairs:
                stack.append(pairs[ch])
            elif ch in "}]" and (not stack or stack.pop() != ch):
                return text  # mismatched or extra closers: not this rule's slip
    return text.rstrip() + "".join(reversed(stack)) if stack else text


def surrounding_text(text: str) -> str:
    """Keep only the first complete JSON value starting at the first ``{`` or ``[``."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return text
    start = min(starts)
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return text
    return text[start:end]


TEXT_RULES: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("code_fence", code_fence),
    ("smart_quotes", smart_quotes),
    ("single_quotes", single_quotes),
    ("python_literals", python_literals),
    ("unquoted_keys", unquoted_keys),
    ("trailing_commas", trailing_commas),
    ("missing_closers", missing_closers),
    ("surrounding_text", surrounding_text),
)
"""Text repairs, in the order they are applied."""


def repair_json(text: str) -> tuple[Any, tuple[str, ...]]:
    """Decode ``text`` as JSON, repairing common slips; returns ``(value, repairs)``.

    Raises :class:`ValueError` (a :class:`json.JSONDecodeError`) naming the first
    remaining problem when the repaired text still does not decode.

    >>> repair_json("{query: 'mug', exact: True}")
    ({'query': 'mug', 'exact': True}, ('single_quotes', 'python_literals', 'unquoted_keys'))
    """
    try:
        return json.loads(text), ()
    except ValueError:
        pass
    applied = []
    for name, rule in TEXT_RULES:
        fixed = rule(text)
        if fixed != text:
            applied.append(name)
            text = fixed
    try:
        return json.loads(text), tuple(applied)
    except ValueError as err:
        err.repairs = tuple(applied)  # type: ignore[attr-defined]
        raise


# -- structural rules -----------------------------------------------------------------------
_NAME_ALIASES = ("tool", "function", "tool_name")
_ARG_ALIASES = ("parameters", "args", "params", "input")


def single_item_list(value: Any) -> Any:
    """``[{...}]`` -> ``{...}``."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def function_wrapper(value: Any) -> Any:
    """``{"type": "function", "function": {"name": ..., ...}}`` -> the inner object."""
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("function"),
                                                                      dict):
        return value["function"]
    return value


def key_aliases(value: Any) -> Any:
    """Rename the usual synonyms of ``name`` and ``arguments``."""
    if not isinstance(value, dict):
        return value
    renamed = dict(value)
    for canon, aliases in (("name", _NAME_ALIASES), ("arguments", _ARG_ALIASES)):
        if canon not in renamed:
            for alias in aliases:
                if alias in renamed and (canon != "name" or isinstance(renamed[alias], str)):
                    renamed[canon] = renamed.pop(alias)
                    break
    return renamed if renamed != value else value


def arguments_as_string(value: Any) -> Any:
    """``"arguments"`` holding a JSON string -> the decoded object."""
    if isinstance(value, dict) and isinstance(value.get("arguments"), str):
        try:
            decoded = json.loads(value["arguments"])
        except ValueError:
            return value
        if isinstance(decoded, dict):
            return {**value, "arguments": decoded}
    return value


def missing_arguments(value: Any) -> Any:
    """No ``arguments`` key -> ``{}`` (the tool's schema then reports missing required ones)."""
    if isinstance(value, dict) and isinstance(value.get("name"), str) and "arguments" not in value:
        return {**value, "arguments": {}}
    return value


STRUCTURE_RULES: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("single_item_list", single_item_list),
    ("function_wrapper", function_wrapper),
    ("key_aliases", key_aliases),
    ("arguments_as_string", arguments_as_string),
    ("missing_arguments", missing_arguments),
)
"""Structural repairs of the decoded value, in the order they are applied."""


def _shape_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"the tool call must be a JSON object, got a JSON {type(value).__name__}"
    if not isinstance(value.get("name"), str) or not value["name"]:
        return 'the tool call object needs a "name" string'
    if not isinstance(value.get("arguments"), dict):
        return '"arguments" must be a JSON object, e.g. {"query": "mug"}'
    extra = sorted(set(value) - {"name", "arguments", "id", "type"})
    if extra:
        return f'unexpected keys {extra}; a call is {{"name": ..., "arguments": {{...}}}}'
    return None


MAX_DEPTH = 32
"""Deepest bracket nesting accepted in a call (deeper JSON is refused, never decoded)."""


def _depth(text: str) -> int:
    depth = deepest = 0
    for kind, t in _segments(text):
        if kind != "code":
            continue
        for ch in t:
            if ch in "{[":
                depth += 1
                deepest = max(deepest, depth)
            elif ch in "}]":
                depth = max(0, depth - 1)
    return deepest


def parse_tool_call(text: str) -> ParsedCall | CallParseError:
    """Decode the body of one ``<tool_call>`` tag into a :class:`ParsedCall`, or say why not."""
    if "{" not in text and "[" not in text:
        return CallParseError('the text inside <tool_call> is not JSON (no "{" found)')
    if _depth(text) > MAX_DEPTH:
        return CallParseError(f"the tool call is nested deeper than {MAX_DEPTH} levels")
    try:
        value, repairs = repair_json(text.strip())
    except RecursionError:
        return CallParseError(f"the tool call is nested deeper than {MAX_DEPTH} levels")
    except ValueError as err:
        tried = getattr(err, "repairs", ())
        return CallParseError(f"the tool call is not valid JSON even after repair ({err})",
                              tuple(tried))
    applied = list(repairs)
    for name, rule in STRUCTURE_RULES:
        fixed = rule(value)
        if fixed is not value:
            applied.append(name)
            value = fixed
    problem = _shape_problem(value)
    if problem is not None:
        return CallParseError(problem, tuple(applied))
    return ParsedCall(value["name"], dict(value["arguments"]), tuple(applied))
