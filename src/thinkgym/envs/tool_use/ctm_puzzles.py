"""``ctm_puzzles``: questions an LLM cannot do in its head but a bundled CTM can.

Two kinds, each answered by a bundled checkpoint through the ``ctm_think`` tool:

* ``parity`` — the cumulative parity of the zeros in a 16-bit string (16 answer bits,
  all must be right): ``parity16``, 24 trained ticks;
* ``digits`` — the digit drawn in an 8x8 glyph grid (one ink character ``0``-``g`` per
  pixel, :func:`~thinkgym.tools.ctm_think.render_glyph`): ``digits16``, 16 trained
  ticks. Only images the checkpoint never trained on are used (its held-out 719).

Train and test are split **by content** (a keyed hash of the bit string or of the
glyph grid), so a policy trained on ``train`` is evaluated on questions it never saw;
within a split, items are drawn deterministically from ``seed``. The kinds alternate,
so each split is half parity, half digits.

    >>> tasks = ctm_puzzles("test", n_per_kind=2)
    >>> [t["kind"] for t in tasks], len(tasks[0]["answer"])
    (['parity', 'digits', 'parity', 'digits'], 16)
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

from thinkgym.envs.tool_use.task_sets import Split
from thinkgym.errors import ConfigError

__all__ = ["CHECKPOINTS", "KINDS", "ctm_puzzles", "in_split", "trained_ticks"]

KINDS = ("parity", "digits")
"""Question kinds, in the order they alternate."""

CHECKPOINTS = {"parity": "parity16", "digits": "digits16"}
"""The bundled checkpoint that answers each kind (``ctm_think``'s default for it)."""

_SPLIT_KEY = b"thinkgym/ctm_puzzles/v0"


def in_split(content: str, split: Split) -> bool:
    """Whether ``content`` (a bit string or a glyph grid) belongs to ``split`` (half each)."""
    digest = hashlib.blake2b(content.encode(), key=_SPLIT_KEY, digest_size=8).digest()
    return (digest[0] < 128) == (split == "train")


@functools.lru_cache(maxsize=2)
def trained_ticks(kind: str) -> int:
    """The ticks the kind's checkpoint was trained with: the full ``ctm_think`` budget."""
    from thinkgym.ctm_core.checkpoint import read_checkpoint

    return int(read_checkpoint(CHECKPOINTS[kind])[1].model_config["iterations"])


def parity_prompt(bits: str) -> str:
    return (f"Give the cumulative parity of the zeros in {bits}: for each position, 1 if an "
            "odd number of 0s appear up to and including it, else 0. Answer with 16 bits.")


def digits_prompt(grid: str) -> str:
    return ("Which digit (0-9) is drawn in this 8x8 glyph grid (ink per pixel, 0 blank to g "
            f"full)?\n{grid}\nAnswer with the digit.")


def _parity(split: Split, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 0])
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        bits = "".join(map(str, rng.integers(0, 2, size=16)))
        if bits not in out and in_split(bits, split):
            parity = np.cumsum([b == "0" for b in bits]) % 2
            out[bits] = {"prompt": parity_prompt(bits), "answer": "".join(map(str, parity)),
                         "kind": "parity"}
    return list(out.values())


@functools.lru_cache(maxsize=1)
def _held_out_glyphs() -> tuple[tuple[str, int], ...]:
    """(glyph grid, label) of every image the digits16 checkpoint held out, deduplicated."""
    from thinkgym.ctm_core.checkpoint import read_checkpoint
    from thinkgym.ctm_core.tasks.digits import DigitsConfig, DigitsTask
    from thinkgym.tools.ctm_think import render_glyph

    task = DigitsTask(DigitsConfig(**read_checkpoint(CHECKPOINTS["digits"])[1].task_config))
    seen: dict[str, int] = {}
    for i in range(len(task.split_images("test"))):
        image, label = task.sample_numpy(i, "test")
        seen.setdefault(render_glyph(image[0]), int(label[0]))
    return tuple(seen.items())


def _digits(split: Split, n: int, seed: int) -> list[dict[str, Any]]:
    pool = [g for g in _held_out_glyphs() if in_split(g[0], split)]
    if n > len(pool):
        raise ConfigError(f"only {len(pool)} held-out digit images in split {split!r}",
                          field="n_per_kind", got=n, fix=f"pass n_per_kind <= {len(pool)}")
    order = np.random.default_rng([seed, 1]).permutation(len(pool))[:n]
    return [{"prompt": digits_prompt(pool[i][0]), "answer": str(pool[i][1]), "kind": "digits"}
            for i in order]


def ctm_puzzles(split: Split = "train", seed: int = 0,
                n_per_kind: int = 150) -> list[dict[str, Any]]:
    """``2 * n_per_kind`` tasks ``{"prompt", "answer", "kind"}``, kinds alternating."""
    if split not in ("train", "test"):
        raise ConfigError("unknown split", field="split", got=split, fix="use 'train' or 'test'")
    if isinstance(n_per_kind, bool) or not isinstance(n_per_kind, int) or n_per_kind < 1:
        raise ConfigError("must be an int >= 1", field="n_per_kind", got=n_per_kind,
                          fix="pass n_per_kind=150")
    parity, digits = _parity(split, n_per_kind, seed), _digits(split, n_per_kind, seed)
    return [t for pair in zip(parity, digits, strict=True) for t in pair]
