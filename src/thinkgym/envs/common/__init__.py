"""What several text environments share; imports nothing (import the module you need).

* :mod:`~thinkgym.envs.common.text_env` — ``TextEnv``, the base of every text env (text
  spaces, the transcript and its env spans, the episode-over guard);
* :mod:`~thinkgym.envs.common.tool_turns` — the JSON tool-call turn (read calls, run
  them with injected faults, render ``<tool_response>`` blocks) and its penalties, used by
  ToolCall-v0, ToolUse-v0, and SearchQA-v0 / Reasoning-v0 with user tools;
* :mod:`~thinkgym.envs.common.call_repair` — parsing one ``<tool_call>`` body, repairing
  the common JSON slips first.
"""
