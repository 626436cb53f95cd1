"""CTM checkpoints: one ``torch.save`` file holding configs, weights and metrics.

Layout (a plain dict; everything but tensors is JSON-like, so ``weights_only`` loading
works and nothing is unpickled as code)::

    format        "thinkgym.ctm_core.checkpoint"
    version       1
    task          {"name": "parity", "config": {...TaskConfig.to_dict()}}
    model_config  CTMConfig.to_dict()
    model_state   state_dict of the ContinuousThoughtMachine (backbone included)
    metrics       {"accuracy_most_certain": ..., ...}  (whatever was measured)
    step          optimiser steps taken
    train_config  TrainConfig.to_dict() or None
    training      optimiser / scheduler / RNG states for resuming, or None (slim file)

``load_checkpoint(name_or_path)`` returns ``(model, task, meta)``; a bare name such as
``"parity16"`` resolves to a bundled file in ``thinkgym/ctm_core/checkpoints/``. Any
problem (missing file, not a checkpoint, other format version, unknown task, invalid
config, weights that do not fit the config) raises :class:`CheckpointError` naming what
mismatched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinkgym.errors import CheckpointError, ThinkgymError

if TYPE_CHECKING:
    from torch import nn

    from thinkgym.ctm_core.config import CTMConfig
    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.ctm_core.tasks.base import Task

__all__ = [
    "BUNDLED_DIR",
    "FORMAT",
    "VERSION",
    "CheckpointMeta",
    "build_model",
    "bundled_checkpoints",
    "export_checkpoint",
    "load_checkpoint",
    "named_checkpoint_path",
    "read_checkpoint",
    "replace_atomically",
    "resolve_checkpoint",
    "save_checkpoint",
    "user_checkpoint_dir",
]

FORMAT = "thinkgym.ctm_core.checkpoint"
VERSION = 1
BUNDLED_DIR = Path(__file__).resolve().parent / "checkpoints"
_REQUIRED = ("format", "version", "task", "model_config", "model_state")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself (everything but the tensors)."""

    path: Path
    """File the checkpoint was read from."""
    task_name: str
    """Registered task name, e.g. ``"parity"``."""
    task_config: dict[str, Any]
    """The task's config dict (seed and split included)."""
    model_config: dict[str, Any]
    """``CTMConfig.to_dict()`` of the model."""
    step: int = 0
    """Optimiser steps taken when it was written."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Metrics stored with it (e.g. the eval at the end of training)."""
    train_config: dict[str, Any] | None = None
    """The training config that produced it, if any."""
    has_training_state: bool = False
    """True if the optimiser/scheduler/RNG state for resuming is inside."""
    backbone: dict[str, Any] | None = None
    """``{"kind", "kwargs"}`` of a backbone other than the task's own (imported weights)."""
    origin: dict[str, Any] | None = None
    """Where imported weights came from (``thinkgym ctm import``)."""


def bundled_checkpoints() -> list[str]:
    """Names of the checkpoints shipped inside the package (``parity16``, ...)."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def user_checkpoint_dir() -> Path:
    """Where named checkpoints of this user live (``thinkgym ctm import --out NAME``):
    ``$THINKGYM_CTM_DIR`` or ``~/.cache/thinkgym/ctm``."""
    return Path(os.environ.get("THINKGYM_CTM_DIR", "~/.cache/thinkgym/ctm")).expanduser()


def named_checkpoint_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A bare name -> ``user_checkpoint_dir()/NAME.pt``; a path stays a path."""
    text = os.fspath(name_or_path)
    if os.sep in text or "/" in text or text.endswith(".pt"):
        return Path(text).expanduser()
    return user_checkpoint_dir() / f"{text}.pt"


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """A bundled or user name (``"parity16"``) or a path -> an existing file path."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    bundled = BUNDLED_DIR / f"{text}.pt"
    if os.sep not in text and "/" not in text and bundled.is_file():
        return bundled
    named = named_checkpoint_path(text)
    if named.is_file():
        return named
    if path.is_dir() and (path / "last.pt").is_file():
        return path / "last.pt"
    names = ", ".join(bundled_checkpoints()) or "(none bundled)"
    raise CheckpointError(f"no checkpoint file or bundled checkpoint named {text!r}",
                          got=text, fix=f"pass an existing .pt path or one of: {names}")


def build_model(task: Task, config: CTMConfig, backbone: nn.Module | None = None
                ) -> ContinuousThoughtMachine:
    """A fresh CTM for ``task``: its backbone (or ``backbone``) plus ``config``, shapes checked."""
    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.errors import ConfigError

    if tuple(config.prediction_shape) != tuple(task.prediction_shape):
        raise ConfigError("model prediction_shape does not match the task",
                          field="prediction_shape", got=tuple(config.prediction_shape),
                          fix=f"use prediction_shape={task.prediction_shape} for {task!r}")
    if config.backbone_dim != task.backbone_dim:
        raise ConfigError("model backbone_dim does not match the task backbone",
                          field="backbone_dim", got=config.backbone_dim,
                          fix=f"use backbone_dim={task.backbone_dim}")
    return ContinuousThoughtMachine(config, task.make_backbone() if backbone is None
                                    else backbone)


def save_checkpoint(path: str | os.PathLike[str], model: ContinuousThoughtMachine, task: Task,
                    *, step: int = 0, metrics: Mapping[str, Any] | None = None,
                    train_config: Mapping[str, Any] | None = None,
                    training: Mapping[str, Any] | None = None,
                    origin: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename); returns the path.

    A backbone that is not the task's own (e.g. an imported reference backbone) says how to
    rebuild it through a ``checkpoint_spec()`` method; the spec is stored under
    ``backbone``. ``origin`` records where imported weights came from.
    """
    import torch

    from thinkgym.errors import NumericalError

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NumericalError("refusing to save a checkpoint with NaN/Inf weights",
                             got=bad[:5], fix="lower the learning rate or clip gradients")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "task": {"name": task.name, "config": task.config.to_dict()},
        "model_config": model.config.to_dict(),
        "model_state": state,
        "metrics": dict(metrics or {}),
        "step": int(step),
        "train_config": dict(train_config) if train_config is not None else None,
        "training": dict(training) if training is not None else None,
    }
    spec = getattr(model.backbone, "checkpoint_spec", None)
    if callable(spec):
        payload["backbone"] = spec()
    if origin is not None:
        payload["origin"] = dict(origin)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(out, lambda tmp: torch.save(payload, tmp))
    return out


def replace_atomically(dst: Path, write: Callable[[str], object]) -> None:
    """``write(tmp_path)`` into a temp file beside ``dst``, then ``os.replace`` it over ``dst``.

    A reader sees the old file or the complete new one, never a partial write; the temp
    file is removed if ``write`` fails. Files get mode 0644 (mkstemp makes 0600; these
    files are meant to be shared).
    """
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint(name_or_path: str | os.PathLike[str]) -> tuple[dict[str, Any],
                                                                    CheckpointMeta]:
    """Load and validate the raw dict of a checkpoint (no model built)."""
    import pickle

    import torch

    path = resolve_checkpoint(name_or_path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}",
                              got=str(path), fix="pass a file written by save_checkpoint "
                              "or `thinkgym ctm train`") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a checkpoint dict",
                              got=type(raw).__name__, fix="pass a file written by save_checkpoint")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"{path} is missing checkpoint keys {missing}",
                              got=sorted(raw)[:10], fix="pass a file written by save_checkpoint "
                              "(a bare state_dict is not enough: configs are needed)")
    if raw["format"] != FORMAT or raw["version"] != VERSION:
        raise CheckpointError(f"{path} has format {raw['format']!r} version {raw['version']!r}",
                              got=(raw["format"], raw["version"]),
                              fix=f"this thinkgym reads {FORMAT!r} version {VERSION}")
    task = raw["task"]
    if not isinstance(task, dict) or "name" not in task or "config" not in task:
        raise CheckpointError(f"{path}: 'task' must be {{'name', 'config'}}", got=task,
                              fix="re-save the checkpoint with save_checkpoint")
    meta = CheckpointMeta(
        path=path, task_name=task["name"], task_config=dict(task["config"]),
        model_config=dict(raw["model_config"]), step=int(raw.get("step", 0)),
        metrics=dict(raw.get("metrics") or {}), train_config=raw.get("train_config"),
        has_training_state=raw.get("training") is not None,
        backbone=raw.get("backbone"), origin=raw.get("origin"))
    return raw, meta


def export_checkpoint(name_or_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      metrics: Mapping[str, Any] | None = None) -> Path:
    """Write a slim copy (no optimiser/RNG state) of a checkpoint, e.g. a run's ``last.pt``.

    ``metrics`` replaces the stored metrics (pass a fresh evaluation); None keeps them.
    """
    raw, meta = read_checkpoint(name_or_path)
    model, task = _rebuild(raw, meta)
    return save_checkpoint(out, model, task, step=meta.step,
                           metrics=meta.metrics if metrics is None else metrics,
                           train_config=meta.train_config)


def load_checkpoint(name_or_path: str | os.PathLike[str]) -> tuple[ContinuousThoughtMachine,
                                                                    Task, CheckpointMeta]:
    """Rebuild ``(model, task, meta)`` from a checkpoint; the model is in eval mode on CPU."""
    raw, meta = read_checkpoint(name_or_path)
    model, task = _rebuild(raw, meta)
    model.eval()
    return model, task, meta


def _rebuild(raw: Mapping[str, Any], meta: CheckpointMeta) -> tuple[ContinuousThoughtMachine,
                                                                     Task]:
    from thinkgym.ctm_core.config import CTMConfig
    from thinkgym.ctm_core.tasks.base import make_task

    try:
        task = make_task(meta.task_name, meta.task_config)
    except ThinkgymError as exc:
        raise CheckpointError(f"{meta.path}: its task cannot be rebuilt: {exc}",
                              got=(meta.task_name, meta.task_config),
                              fix="use the thinkgym version that wrote it") from exc
    try:
        config = CTMConfig.from_dict(meta.model_config)
        backbone = None
        if meta.backbone is not None:
            from thinkgym.ctm_core.reference_backbones import build_backbone

            backbone = build_backbone(meta.backbone)
        model = build_model(task, config, backbone)
    except ThinkgymError as exc:
        raise CheckpointError(f"{meta.path}: its model config is incompatible: {exc}",
                              got=meta.model_config, fix="use the thinkgym version that wrote "
                              "it") from exc
    load_state(model, raw["model_state"], where=str(meta.path))
    return model, task


def load_state(model: nn.Module, state: Mapping[str, Any], *, where: str) -> None:
    """``load_state_dict`` with a :class:`CheckpointError` that lists every mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state))
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{where}: weights do not fit the model config: "
                              + ", ".join(parts), got=len(missing) + len(unexpected) + len(shapes),
                              fix="load it with the config it was trained with (the one stored "
                              "in the checkpoint) or retrain")
    model.load_state_dict(dict(state))
