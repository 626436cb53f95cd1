"""Training curves from a trainer's ``log_history``: reward, completion length, detector rates.

:func:`make_curves_callback` gives a ``transformers.TrainerCallback`` that redraws one PNG
(matplotlib, Agg backend: no display needed) from ``state.log_history`` every
``every`` log events and at the end of training. It reads TRL's metric names:

* **reward** — ``reward`` (the weighted episode return) and, per weighted
  component, ``rewards/<name>/mean``;
* **length** — ``completions/mean_length`` (agent + env tokens of the whole
  assistant sequence) and ``rollout/turns`` when the env rollout logs it;
* **detectors** — ``rewards/<detector>/mean`` for the reward-hacking detectors
  (their rate: the fraction of episodes flagged).

An SFT run has none of these; its ``loss`` (and ``mean_token_accuracy``) is drawn
instead, so the same callback serves both trainers. (``transformers`` is imported only when the
callback is made.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["make_curves_callback", "plot_log_history", "series"]

logger = logging.getLogger(__name__)


def series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of ``key`` over the log events that carry it."""
    xs: list[float] = []
    ys: list[float] = []
    for event in log_history:
        v = event.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            xs.append(float(event.get("step", len(xs))))
            ys.append(float(v))
    return xs, ys


def _panels(log_history: Sequence[Mapping[str, Any]], detectors: Sequence[str],
            components: Sequence[str]) -> list[tuple[str, list[str]]]:
    keys = {k for e in log_history for k in e}
    reward = [k for k in ["reward", *(f"rewards/{c}/mean" for c in components)] if k in keys]
    length: list[str] = [k for k in ("completions/mean_length", "rollout/turns") if k in keys]
    detect = [k for k in (f"rewards/{d}/mean" for d in detectors) if k in keys]
    sft: list[str] = [k for k in ("loss", "mean_token_accuracy") if k in keys]
    panels: list[tuple[str, list[str]]] = [
        ("reward", reward), ("completion length (tokens) / turns", length),
        ("detector rate", detect),
    ]
    if not reward and sft:
        panels = [("SFT loss / token accuracy", sft)]
    return [(title, ks) for title, ks in panels if ks]


def plot_log_history(log_history: Sequence[Mapping[str, Any]], path: str | Path, *,
                     detectors: Sequence[str] = (), components: Sequence[str] = (),
                     title: str = "") -> Path | None:
    """Draw the curves of ``log_history`` into ``path`` (PNG); None if nothing is logged yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(log_history, detectors, components)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            xs, ys = series(log_history, key)
            ax.plot(xs, ys, label=key, lw=1.2)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_curves_callback(path: str | Path, *, detectors: Sequence[str] = (),
                         components: Sequence[str] = (), every: int = 10,
                         title: str = "") -> Any:
    """A ``TrainerCallback`` redrawing ``path`` every ``every`` logs and at the end."""
    from transformers import TrainerCallback

    class _Curves(TrainerCallback):
        def __init__(self) -> None:
            self.path, self.logs = Path(path), 0

        def _draw(self, state: Any) -> None:
            plot_log_history(state.log_history, self.path, detectors=detectors,
                             components=components, title=title)

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.logs += 1
            if state.is_world_process_zero and self.logs % every == 0:
                self._draw(state)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                self._draw(state)
                logger.info("training curves written to %s", self.path)

    return _Curves()
