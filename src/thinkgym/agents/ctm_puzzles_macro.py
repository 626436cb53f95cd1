"""ToolUse-v0 on ``ctm_puzzles`` as a choice among macro-actions: when, and how long, to think.

:class:`CTMPuzzlesMacroAdapter` is a :class:`~thinkgym.agents.macro.MacroAdapter`. It reads
only the prompt and the tool responses. On the first turn a policy picks one of
:data:`ACTIONS`:

* ``answer`` — answer without the CTM. A scripted agent cannot do these questions in
  its head, so this is a fixed guess (16 zeros for parity, ``1`` for a digit);
* ``think_t{f}_c{c}`` — call ``ctm_think`` on the question's input with ``max_ticks`` =
  ``f`` x the checkpoint's trained ticks (:func:`~thinkgym.envs.tool_use.ctm_puzzles.trained_ticks`)
  and certainty threshold ``c`` (1.0: think the whole budget).

After a ``ctm_think`` response every action answers with the CTM's answer (the second
turn has nothing left to decide). The features (:data:`FEATURES`) are the question kind
and whether the CTM has answered — never the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from thinkgym.envs.tool_use.ctm_puzzles import trained_ticks

__all__ = ["ACTIONS", "FEATURES", "THINK", "CTMPuzzlesMacroAdapter"]

THINK = ((1.0, 1.0), (1.0, 0.9), (0.75, 0.9), (0.5, 1.0), (0.5, 0.9))
"""``(fraction of the trained ticks, certainty threshold)`` of each think action."""

ACTIONS = ("answer", *(f"think_t{f:.2f}_c{c:.2f}" for f, c in THINK))
"""Macro-action names, in index order."""

FEATURES = ("bias", "is_parity", "is_digits", "has_ctm_answer")
"""Feature names, in vector order."""

_GUESS = {"parity": "0" * 16, "digits": "1"}
_BITS = re.compile(r"zeros in ([01]{16})")
_GRID = re.compile(r"glyph grid[^\n]*\n((?:[0-9a-g]{8}\n){7}[0-9a-g]{8})")
_RESPONSE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)


def _kind_and_input(prompt: str) -> tuple[str | None, str]:
    if (m := _BITS.search(prompt)) is not None:
        return "parity", m[1]
    if (m := _GRID.search(prompt)) is not None:
        return "digits", m[1]
    return None, ""


class CTMPuzzlesMacroAdapter:
    """Features and protocol-text actions for ToolUse-v0 with ``tasks="ctm_puzzles"``."""

    action_names = ACTIONS
    num_features = len(FEATURES)

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.kind: str | None = None
        self.input = ""
        self.ctm_answer: str | None = None
        self.ticks = 0
        """CTM ticks the episode's ``ctm_think`` calls reported."""
        self.called = False

    def _read_response(self, text: str) -> None:
        for body in _RESPONSE.findall(text):
            try:
                content = json.loads(body).get("content")
            except ValueError:
                continue
            if isinstance(content, str) and (m := re.search(r"answer: (\S+)", content)):
                self.ctm_answer = m[1]
                self.ticks += int(re.search(r"ticks: (\d+)", content)[1])  # type: ignore[index]

    def features(self, observation: Any) -> np.ndarray:
        text = str(observation)
        if self.kind is None and not self.called:
            self.kind, self.input = _kind_and_input(text)
        else:
            self._read_response(text)
        return np.array([1.0, self.kind == "parity", self.kind == "digits",
                         self.ctm_answer is not None], dtype=np.float32)

    def render(self, action: int) -> str:
        kind = self.kind or "parity"
        if self.called or action == 0:
            return f"<answer>{self.ctm_answer or _GUESS[kind]}</answer>"
        self.called = True
        fraction, certainty = THINK[action - 1]
        args = {"task": kind, "input": self.input,
                "max_ticks": max(1, round(fraction * trained_ticks(kind))),
                "certainty": certainty}
        return f"<tool_call>{json.dumps({'name': 'ctm_think', 'arguments': args})}</tool_call>"

    def success(self, info: Mapping[str, Any], episode_return: float) -> bool:
        return info.get("correct") == 1.0
