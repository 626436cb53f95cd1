"""``ctm_think``: a Continuous Thought Machine as an inner reasoning engine for LLM agents.

An agent hands the CTM a problem in text form; the CTM thinks tick by tick until
its certainty reaches a threshold or ``max_ticks`` run out, and returns its answer,
its certainty and the ticks it used::

    >>> from thinkgym.tools import TOOLS
    >>> out = TOOLS.get("ctm_think")(task="parity", input="0110100111010010")  # doctest: +SKIP
    >>> out  # doctest: +SKIP
    'answer: 1011000101101100\\ncertainty: 0.991\\nticks: 23'

Text inputs: ``parity`` takes a string of 0/1 bits of the checkpoint's length
(``1`` is a +1 bit, as ``ParityTask.describe`` renders it); ``sort`` takes
comma- or space-separated numbers; ``digits`` takes an 8x8 glyph grid, 8 rows of 8
characters (rows split by newlines, spaces or ``/``), each a pixel's ink from ``0``
(blank) to ``g`` (16, full) as :func:`render_glyph` writes it. Checkpoints load once per
process.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

import numpy as np

from thinkgym.errors import ThinkgymError, ToolError
from thinkgym.tools.base import FunctionTool

__all__ = ["GLYPH_LEVELS", "ctm_think", "parse_input", "render_glyph"]

_DEFAULT_CHECKPOINT = {"parity": "parity16", "digits": "digits16"}

GLYPH_LEVELS = "0123456789abcdefg"
"""Pixel ink 0..16 (scikit-learn's 8x8 digits), one character each: lossless."""


def render_glyph(image: np.ndarray) -> str:
    """An 8x8 image in [0, 1] as 8 lines of :data:`GLYPH_LEVELS` characters.

    >>> render_glyph(np.eye(8)).splitlines()[:2]
    ['g0000000', '0g000000']
    """
    levels = np.clip(np.rint(np.asarray(image, dtype=np.float64).reshape(8, 8) * 16), 0, 16)
    return "\n".join("".join(GLYPH_LEVELS[int(v)] for v in row) for row in levels)


@functools.lru_cache(maxsize=4)
def _load(checkpoint: str) -> tuple[Any, Any]:
    from thinkgym.ctm_core.checkpoint import load_checkpoint

    model, task, _ = load_checkpoint(checkpoint)
    model.requires_grad_(False)
    return model, task


def parse_input(task_name: str, text: str, length: int) -> np.ndarray:
    """The task input encoded in ``text`` (raises ToolError naming what is wrong)."""
    text = text.strip()
    if task_name == "parity":
        bits = re.sub(r"[\s,]", "", text)
        if len(bits) != length or set(bits) - {"0", "1"}:
            raise ToolError(f"parity input must be {length} characters of 0/1", tool="ctm_think",
                            got=text, fix=f"pass e.g. input={'01' * (length // 2)!r}")
        return np.array([1.0 if b == "1" else -1.0 for b in bits], dtype=np.float32)
    if task_name == "sort":
        try:
            values = [float(v) for v in re.split(r"[\s,]+", text) if v]
        except ValueError:
            values = []
        if len(values) != length:
            raise ToolError(f"sort input must be {length} numbers", tool="ctm_think", got=text,
                            fix="pass comma-separated numbers, e.g. input='0.3, -1.2, ...'")
        return np.array(values, dtype=np.float32)
    if task_name == "digits":
        cells = re.sub(r"[\s,/]", "", text).lower()
        if len(cells) != 64 or set(cells) - set(GLYPH_LEVELS):
            raise ToolError(f"digits input must be 8 rows of 8 characters from {GLYPH_LEVELS}",
                            tool="ctm_think", got=text[:80],
                            fix="pass the glyph grid as shown, e.g. '00g00000/...' (8 rows)")
        ink = np.array([GLYPH_LEVELS.index(c) for c in cells], dtype=np.float32) / 16.0
        return ink.reshape(1, 8, 8)
    raise ToolError(f"task {task_name!r} has no text input form", tool="ctm_think", got=task_name,
                    fix="use task='parity', 'sort' or 'digits'")


def _render(task_name: str, prediction: np.ndarray) -> str:
    if task_name == "parity":
        return "".join(str(int(p)) for p in prediction)
    return " ".join(str(int(p)) for p in prediction)


def _ctm_think(task: Literal["parity", "sort", "digits"], input: str, max_ticks: int = 32,
               certainty: float = 0.95, checkpoint: str | None = None) -> str:
    """Think about a problem with a Continuous Thought Machine and return its answer.

    Args:
        task: The problem type: "parity" (cumulative parity of a bit string), "sort"
            (the indices that sort a list of numbers) or "digits" (the digit drawn in an
            8x8 glyph grid).
        input: The problem as text: 0/1 bits for parity, numbers for sort, 8 rows of 8
            ink characters 0-g for digits.
        max_ticks: Most internal ticks the CTM may think (1-256).
        certainty: Stop thinking once the CTM's certainty reaches this (0-1].
        checkpoint: CTM checkpoint name or path; default: the bundled one for the task.
    """
    import torch

    if not 1 <= max_ticks <= 256:
        raise ToolError("max_ticks must be in [1, 256]", tool="ctm_think", got=max_ticks,
                        fix="pass max_ticks=32")
    if not 0.0 < certainty <= 1.0:
        raise ToolError("certainty must be in (0, 1]", tool="ctm_think", got=certainty,
                        fix="pass certainty=0.95")
    name = checkpoint or _DEFAULT_CHECKPOINT.get(task)
    if name is None:
        raise ToolError(f"no bundled checkpoint for task {task!r}", tool="ctm_think", got=task,
                        fix="pass checkpoint=PATH of a CTM trained on it")
    try:
        model, ctm_task = _load(name)
    except ThinkgymError as exc:
        raise ToolError(f"cannot load CTM checkpoint: {exc}", tool="ctm_think",
                        got=name) from exc
    if ctm_task.name != task:
        raise ToolError(f"checkpoint {name!r} solves {ctm_task.name!r}, not {task!r}",
                        tool="ctm_think", got=name, fix=f"pass a {task} checkpoint")
    x = torch.from_numpy(parse_input(task, input, ctm_task.prediction_shape[0]))[None]
    with torch.no_grad():
        kv = model.compute_kv(x)
        state = model.init_state(kv)
        ticks, conf = 0, 0.0
        while ticks < max_ticks and conf < certainty:
            state, logits, cert = model.tick(state, kv)
            ticks, conf = ticks + 1, float(cert[0])
    prediction = ctm_task.split_logits(logits)[0, :, :, 0].argmax(-1).numpy()
    return f"answer: {_render(task, prediction)}\ncertainty: {conf:.3f}\nticks: {ticks}"


ctm_think = FunctionTool(_ctm_think, name="ctm_think", timeout=30.0)
"""The registered tool (``TOOLS.get("ctm_think")``)."""
