"""Shared machinery of the text environments (SearchQA, ToolCall, Reasoning).

A text env's episode is one assistant sequence: the agent writes an action, the env
answers with an observation that is appended to the same sequence (retrieved
passages, tool responses, corrective messages). Trainers need to know which
characters the env wrote so those tokens get no loss; :class:`Transcript` keeps
the sequence and the character spans of every env-inserted segment.

Conventions every text env follows (documented here once):

* ``reset`` returns the task prompt; ``step(action)`` returns only the *new* env
  text of this turn (possibly ``""`` at the end of an episode).
* ``info["transcript"]`` is the agent/env sequence after the prompt (agent text
  and env text concatenated in order), and ``info["env_spans"]`` lists
  ``(start, end)`` character spans of env-inserted text inside it.
* ``info["reward_components"]`` is the reward ledger entry of the step.
* ``step`` after the episode ended raises :class:`thinkgym.errors.EnvStateError`;
  a non-string action raises :class:`thinkgym.errors.InvalidAction`. Everything
  an agent can *write* (malformed tags, bad JSON, overlong text) is an agent
  mistake: it becomes an observation and a documented penalty, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from thinkgym.errors import ConfigError, EnvStateError, InvalidAction
from thinkgym.spaces import text_space

__all__ = ["TextEnv", "Transcript", "clip_text"]

_CLIP_MARK = " …[truncated]"


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    if limit <= len(_CLIP_MARK):
        return text[:limit]
    return text[: limit - len(_CLIP_MARK)] + _CLIP_MARK


@dataclass
class Transcript:
    """The agent/env sequence of one episode and the spans the env wrote."""

    text: str = ""
    env_spans: list[tuple[int, int]] = field(default_factory=list)

    def add_agent(self, text: str) -> None:
        """Append agent-written text (gets loss in training)."""
        self.text += text

    def add_env(self, text: str) -> tuple[int, int]:
        """Append env-written text and return its ``(start, end)`` span (no loss)."""
        start = len(self.text)
        self.text += text
        if text:
            self.env_spans.append((start, len(self.text)))
        return start, len(self.text)

    def info(self) -> dict[str, Any]:
        """The ``transcript`` / ``env_spans`` entries of ``info``."""
        return {"transcript": self.text, "env_spans": [list(s) for s in self.env_spans]}


class TextEnv(gym.Env[str, str]):
    """Base class: text spaces, the transcript, and the episode-over guard.

    Subclasses implement ``_reset_episode() -> (prompt, info)`` and
    ``_step_episode(action) -> (observation, reward, terminated, truncated, info)``,
    using ``self.np_random`` for all randomness and ``self.transcript`` to record
    env-written text via :meth:`emit`.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012

    def __init__(
        self, *, max_observation_chars: int, max_action_chars: int, render_mode: str | None = None
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError("unsupported render_mode", field="render_mode", got=render_mode,
                              fix=f"use one of {self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.max_observation_chars = max_observation_chars
        self.max_action_chars = max_action_chars
        self.observation_space = text_space(max_observation_chars)
        self.action_space = text_space(max_action_chars)
        self.transcript = Transcript()
        self._prompt = ""
        self._episode_over = True

    # -- subclass hooks -------------------------------------------------------------
    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        raise NotImplementedError

    # -- gymnasium API --------------------------------------------------------------
    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._episode_over:
            raise EnvStateError("step() called after the episode ended (or before reset)",
                                fix="call reset() to start a new episode")
        if not isinstance(action, str):
            raise InvalidAction("text envs take a string action", got=type(action).__name__,
                                fix="pass the agent's text, e.g. '<answer>Paris</answer>'")
        truncated_action = len(action) > self.max_action_chars
        action = action[: self.max_action_chars]
        self.transcript.add_agent(action)
        obs, reward, terminated, truncated, info = self._step_episode(action)
        self._episode_over = terminated or truncated
        info.setdefault("action_truncated", truncated_action)
        info.update(self.transcript.info())
        return obs, float(reward), terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed, options=options)
        self.transcript = Transcript()
        prompt, info = self._reset_episode()
        self._prompt = clip_text(prompt, self.max_observation_chars)
        self._episode_over = False
        info.update(self.transcript.info())
        return self._prompt, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._prompt + self.transcript.text
        return None

    # -- helpers --------------------------------------------------------------------
    def emit(self, text: str) -> str:
        """Record env-written ``text`` (clipped to the observation space) and return it."""
        text = clip_text(text, self.max_observation_chars)
        self.transcript.add_env(text)
        return text
