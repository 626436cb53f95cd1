"""Format: strict tag-sequence checkers per protocol, and JSON validity.

A protocol names its tags, gives each a letter, and states the allowed sequences
as regular expressions over those letters. A completion passes only if

1. every tag is closed, none nests inside another, no closing tag is stray;
2. nothing but whitespace lies outside the tags (unless the protocol allows text);
3. every agent-written block (think, search, tool_call, answer) is non-empty;
4. every ``<tool_call>`` holds a JSON object ``{"name": str, "arguments": object}``;
5. the letter sequence matches the protocol's *episode* pattern (final turn) or its
   *turn* pattern (a mid-episode turn, which ends in an action, optionally
   followed by the env's response).

Built-in protocols (``T`` think, ``S`` search, ``I`` information (env), ``C``
tool_call, ``R`` tool_response (env), ``A`` answer):

=============  ======================  =======================
protocol       episode                 mid-episode turn
=============  ======================  =======================
search         ``T(SIT)*A``            ``T(SIT)*SI?``
tool           ``(T?CR)*T?A``          ``(T?CR)*T?CR?``
think_answer   ``TA``                  ``TA``
boxed          ``T?`` + text with exactly one distinct ``\\boxed{}`` answer
ctm            not applicable (None)
=============  ======================  =======================

Against farming, :class:`FormatReward` scores only the final turn by default
(mid-episode turns return None): a per-turn format bonus pays an agent for making
more turns. Pass ``score_turns=True`` to check every turn.

    >>> check_format("<think>hm</think><search>q</search><information>d</information>"
    ...              "<think>ok</think><answer>Paris</answer>", "search").ok
    True
    >>> check_format("<think>hm</think>Paris<answer>Paris</answer>", "search").reason
    'text outside tags'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from thinkgym.errors import ConfigError
from thinkgym.protocols import RewardInput
from thinkgym.registry import Registry
from thinkgym.rewards.base import REWARDS
from thinkgym.rewards.correctness import boxed_answer
from thinkgym.rewards.parsing import _scan, agent_text, extract_boxed

__all__ = ["FORMAT_PROTOCOLS", "FormatCheck", "FormatReward", "JsonValidity", "TagProtocol",
           "check_format", "check_tool_call_json", "copies_prompt_example"]


@dataclass(frozen=True)
class TagProtocol:
    """A tag grammar: tags -> letters, and the allowed letter sequences."""

    name: str
    """Protocol name, as in ``RewardInput.protocol``."""
    letters: Mapping[str, str] = field(default_factory=dict)
    """Tag name -> one-letter symbol used in the patterns."""
    episode: str | None = None
    """Regex over letters for a finished episode; None: format does not apply."""
    turn: str | None = None
    """Regex over letters for a mid-episode turn (defaults to ``episode``)."""
    env_tags: frozenset[str] = frozenset()
    """Tags the env writes (may be empty); all others must have content."""
    json_tags: frozenset[str] = frozenset()
    """Tags whose content must be a tool-call JSON object."""
    text_outside: bool = False
    """Allow non-whitespace text outside the tags."""
    require_boxed: bool = False
    r"""The final text must hold exactly one distinct ``\boxed{}`` answer."""

    def __post_init__(self) -> None:
        for tag, letter in self.letters.items():
            if not re.fullmatch(r"[a-z_]+", tag) or len(letter) != 1:
                raise ConfigError("tags must be lowercase names mapped to single letters",
                                  field="letters", got={tag: letter},
                                  fix="use e.g. {'think': 'T', 'answer': 'A'}")
        for pat in (self.episode, self.turn):
            if pat is not None:
                try:
                    re.compile(pat)
                except re.error as exc:
                    raise ConfigError(f"bad pattern: {exc}", field="episode/turn", got=pat,
                                      fix="write a regex over the tag letters") from exc


FORMAT_PROTOCOLS: Registry[TagProtocol] = Registry("format protocol")
"""Tag protocols by name; register your own with ``FORMAT_PROTOCOLS.register``."""

for _p in (
    TagProtocol("search", {"think": "T", "search": "S", "information": "I", "answer": "A"},
                episode=r"T(SIT)*A", turn=r"T(SIT)*SI?", env_tags=frozenset({"information"})),
    TagProtocol("tool", {"think": "T", "tool_call": "C", "tool_response": "R", "answer": "A"},
                episode=r"(T?CR)*T?A", turn=r"(T?CR)*T?CR?",
                env_tags=frozenset({"tool_response"}), json_tags=frozenset({"tool_call"})),
    TagProtocol("think_answer", {"think": "T", "answer": "A"}, episode=r"TA"),
    TagProtocol("boxed", {"think": "T"}, episode=r"T?", text_outside=True, require_boxed=True),
    TagProtocol("ctm"),
):
    FORMAT_PROTOCOLS.register(_p.name, _p)


@dataclass(frozen=True)
class FormatCheck:
    """Outcome of :func:`check_format`; ``reason`` says what failed ("" if ok)."""

    ok: bool
    reason: str = ""


def check_tool_call_json(content: str) -> str:
    """"" if ``content`` is ``{"name": str, "arguments": object}``, else what is wrong."""
    try:
        obj = json.loads(content)
    except (json.JSONDecodeError, ValueError):
        return "tool_call is not valid JSON"
    if not isinstance(obj, dict):
        return "tool_call JSON is not an object"
    if not isinstance(obj.get("name"), str) or not obj["name"]:
        return "tool_call JSON lacks a string 'name'"
    if not isinstance(obj.get("arguments", {}), dict):
        return "tool_call 'arguments' is not an object"
    return ""


def check_format(text: str, protocol: str | TagProtocol, *, final: bool = True) -> FormatCheck:
    """Check ``text`` against ``protocol`` (see the module doc for the rules)."""
    proto = FORMAT_PROTOCOLS.get(protocol) if isinstance(protocol, str) else protocol
    pattern = proto.episode if final else (proto.turn or proto.episode)
    if pattern is None:
        raise ConfigError(f"format does not apply to protocol {proto.name!r}", field="protocol",
                          got=proto.name, fix="check FormatReward's None result instead")
    scan = _scan(text, proto.letters)
    if not scan.ok:
        return FormatCheck(False, "unclosed, nested or stray tag")
    if not proto.text_outside and scan.outside.strip():
        return FormatCheck(False, "text outside tags")
    for block in scan.blocks:
        if block.tag not in proto.env_tags and not block.content.strip():
            return FormatCheck(False, f"empty <{block.tag}>")
        if block.tag in proto.json_tags:
            problem = check_tool_call_json(block.content)
            if problem:
                return FormatCheck(False, problem)
    letters = "".join(proto.letters[b.tag] for b in scan.blocks)
    if not re.fullmatch(pattern, letters):
        return FormatCheck(False, f"tag order {letters or '(none)'} breaks {pattern}")
    if final and proto.require_boxed and boxed_answer(scan.outside) is None:
        return FormatCheck(False, "no single boxed answer")
    return FormatCheck(True)


@dataclass(frozen=True)
class FormatReward:
    """``pass_value`` if the completion follows ``inp.protocol``, else ``fail_value``.

    None when ``inp.protocol`` is None or has no format (``ctm``), and for
    mid-episode turns unless ``score_turns``.
    """

    pass_value: float = 1.0
    """Raw value of a well-formed completion."""
    fail_value: float = 0.0
    """Raw value of a malformed one."""
    score_turns: bool = False
    """Also score mid-episode turns with the protocol's turn pattern."""
    name: str = "format"
    """Component name."""

    def __call__(self, inp: RewardInput) -> float | None:
        if inp.protocol is None:
            return None
        proto = FORMAT_PROTOCOLS.get(inp.protocol)
        if proto.episode is None or (not inp.done and not self.score_turns):
            return None
        ok = check_format(inp.completion, proto, final=inp.done).ok
        if ok and proto.require_boxed and inp.done and copies_prompt_example(inp):
            ok = False
        return self.pass_value if ok else self.fail_value


def copies_prompt_example(inp: RewardInput) -> bool:
    r"""The boxed answer is one the prompt itself shows boxed (an instruction's example).

    A model that copies ``oxed{42}`` from "answer in oxed{}, e.g. oxed{42}" has
    not learned the format: :class:`FormatReward` pays nothing for it.
    """
    answer = boxed_answer(agent_text(inp.completion, inp.env_spans))
    examples = extract_boxed(inp.prompt or "")
    return answer is not None and answer.strip() in {e.strip() for e in examples}


@dataclass(frozen=True)
class JsonValidity:
    """+0.5 if the answer is valid JSON, -0.5 if not (the design's numbers).

    Reads ``inp.answer``, or the agent's text when no answer was extracted.
    """

    pass_value: float = 0.5
    """Raw value for valid JSON."""
    fail_value: float = -0.5
    """Raw value for invalid or empty JSON."""
    require_object: bool = False
    """Only a JSON object passes (not a list, string or number)."""
    name: str = "json_valid"
    """Component name."""

    def __call__(self, inp: RewardInput) -> float:
        text = inp.answer if inp.answer is not None else agent_text(inp.completion, inp.env_spans)
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, ValueError):
            return self.fail_value
        if self.require_object and not isinstance(obj, dict):
            return self.fail_value
        return self.pass_value


REWARDS.register("format", FormatReward())
REWARDS.register("json_valid", JsonValidity())
