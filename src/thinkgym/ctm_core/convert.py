"""Import weights saved by the reference CTM implementation.

The reference repository (SakanaAI/continuous-thought-machines, ``models/ctm.py``)
saves ``ContinuousThoughtMachine.state_dict()`` with its own names and layouts.
:func:`convert_reference_state_dict` maps those onto this package's engine:

========================================= =========================================
reference key                             ours
========================================= =========================================
``kv_proj.0.*`` / ``kv_proj.1.*``         ``kv_proj.*`` / ``kv_norm.*``
``q_proj.*``                              ``q_proj.*``
``attention.in_proj_weight`` (3E, E)      ``attention.w_q/w_k/w_v.weight`` (3 chunks)
``attention.in_proj_bias`` (3E,)          ``attention.w_q/w_k/w_v.bias``
``attention.out_proj.*``                  ``attention.w_out.*``
``synapses.1.*`` / ``synapses.3.*``       ``synapses.linear.*`` / ``synapses.norm.*`` (depth 1)
``synapses.first_projection.{0,1}.*``     ``synapses.first.{0,1}.*`` (U-Net)
``synapses.down_projections.i.*``         ``synapses.down.i.*``
``synapses.up_projections.i.*``           ``synapses.up.i.*``
``synapses.skip_lns.i.*``                 ``synapses.skip_norms.i.*``
``trace_processor.0.0.w1`` (M, O, D)      ``nlm.w1`` (D, M, O)
``trace_processor.0.0.b1`` (1, D, O)      ``nlm.b1`` (D, O)
``trace_processor.0.0.T``                 ``nlm.t1``
``trace_processor.0.0.layernorm.*``       ``nlm.norm1.*``
``trace_processor.0.2.{w1,b1,T,layernorm}`` ``nlm.{w2,b2,t2,norm2}`` (deep NLMs)
``start_activated_state`` / ``start_trace`` ``start_z`` / ``start_history``
``decay_params_{action,out}``             ``decay_{action,out}``
``{action,out}_neuron_indices_{left,right}`` ``synch_{action,out}_{i,j}`` (pairs)
``output_projector.0.*``                  ``output_proj.*``
``backbone.*``, ``positional_embedding.*``, ``initial_rgb.*``  ``backbone_state_dict``
========================================= =========================================

For ``first-last`` and ``random`` the reference keeps the selected neurons
(left, right) and takes the upper triangle of their product matrix at every
tick; we store the resulting pairs directly. The reference clamps the decay
parameters to [0, 15] in place during forward; we clamp inside the computation,
so loading unclamped values gives the same outputs.

The number of attention heads is not recorded in a state dict and must be given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from thinkgym.ctm_core.config import CTMConfig
from thinkgym.errors import CheckpointError

__all__ = ["ConvertedCTM", "convert_reference_state_dict", "import_reference_checkpoint",
           "read_reference_file"]

_BACKBONE_PREFIXES = ("backbone.", "positional_embedding.", "initial_rgb.")
_NLM_LAYERS = {"trace_processor.0.0.": ("w1", "b1", "t1", "norm1"),
               "trace_processor.0.2.": ("w2", "b2", "t2", "norm2")}


@dataclass
class ConvertedCTM:
    """The result of :func:`convert_reference_state_dict`."""

    config_kwargs: dict[str, Any]
    """Keyword arguments for ``CTMConfig`` inferred from the weights (plus what you passed)."""
    state_dict: dict[str, torch.Tensor]
    """Our ``ContinuousThoughtMachine`` state dict (without backbone weights)."""
    backbone_state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    """The reference's backbone / positional-embedding weights, keys unchanged
    (``build`` rebuilds the backbone they belong to and loads them)."""

    def config(self, **overrides: Any) -> CTMConfig:
        """A validated ``CTMConfig`` (``overrides`` replace inferred values)."""
        return CTMConfig(**{**self.config_kwargs, **overrides})

    @property
    def backbone_spec(self) -> dict[str, Any] | None:
        """``{"kind", "kwargs"}`` of the reference backbone in the weights (None: none).

        Raises :class:`CheckpointError` naming a backbone this library does not reproduce.
        """
        from thinkgym.ctm_core.reference_backbones import detect_backbone

        return detect_backbone(self.backbone_state_dict)

    def build(self, backbone: Any = None, *, core_only: bool = False, **overrides: Any) -> Any:
        """A ``ContinuousThoughtMachine`` with every weight loaded from the state dict.

        The reference backbone in the weights is rebuilt and loaded (see
        ``reference_backbones``). ``backbone``: your own module instead; it must take the
        reference's backbone weights exactly (else :class:`CheckpointError`). ``core_only``:
        no backbone at all (inputs must already be tokens of width ``backbone_dim``).
        Nothing is ever left at its random initialisation: a model whose parameters the
        state dict does not cover raises. The model takes the dtype of the weights.
        """
        from thinkgym.ctm_core.checkpoint import load_state
        from thinkgym.ctm_core.model import ContinuousThoughtMachine
        from thinkgym.ctm_core.reference_backbones import build_backbone, map_backbone_state_dict

        config = self.config(**overrides)
        weights = dict(self.state_dict)
        spec = None if core_only else self.backbone_spec
        if core_only and backbone is not None:
            raise CheckpointError("pass a backbone or core_only=True, not both",
                                  got=type(backbone).__name__, fix="drop one of them")
        if spec is None and backbone is not None:
            raise CheckpointError("the weights hold no backbone: yours would stay random",
                                  got=type(backbone).__name__,
                                  fix="build without a backbone (inputs are tokens) or load "
                                      "trained weights into yours first and attach it later")
        if spec is not None:
            if backbone is None:
                backbone = build_backbone(spec, length=config.prediction_shape[0])
            weights.update(map_backbone_state_dict(spec["kind"], self.backbone_state_dict))
        model = ContinuousThoughtMachine(config, backbone=backbone)
        model.to(weights["start_z"].dtype)
        try:
            load_state(model, weights, where="converted reference weights")
        except CheckpointError as exc:
            raise CheckpointError(f"{exc.args[0]} (nothing may stay randomly initialised)",
                                  got=exc.got, fix="check the overrides against the reference "
                                  "config, or your backbone against the reference's") from exc
        return model


def convert_reference_state_dict(
    sd: Mapping[str, torch.Tensor],
    *,
    heads: int,
    prediction_shape: tuple[int, ...] | None = None,
    iterations: int = 75,
    neuron_select_type: str | None = None,
    seed: int = 0,
) -> ConvertedCTM:
    """Map a reference-repo CTM ``state_dict`` onto this package's layout.

    Args:
        sd: the reference model's ``state_dict()`` (e.g. ``torch.load(path)["model_state_dict"]``).
        heads: attention heads the reference model was built with (not stored in weights).
        prediction_shape: the reference's ``prediction_reshaper`` (e.g. ``(64, 2)`` for
            parity-64); default ``(out_dims,)``, one classification over all outputs.
        iterations: default ticks for the converted config.
        neuron_select_type: override the inferred strategy (only the config label; the
            pairs themselves always come from the state dict).
        seed: stored in the config; unused by converted weights (pairs are loaded).

    Raises:
        CheckpointError: a required key is missing, a shape is inconsistent, or the
            state dict holds keys this converter does not know.
    """
    sd = _strip_wrapper_prefix(dict(sd))
    backbone_sd = {k: v for k, v in sd.items() if k.startswith(_BACKBONE_PREFIXES)}
    core = {k: v for k, v in sd.items() if k not in backbone_sd}
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in core:
            raise CheckpointError("reference state dict is missing a key", got=key,
                                  fix="pass the full ContinuousThoughtMachine.state_dict() "
                                      "(heads > 0, output projector built)")
        used.add(key)
        return core[key]

    def rename(src: str, dst: str) -> None:
        for suffix in ("weight", "bias"):
            ours[f"{dst}.{suffix}"] = take(f"{src}.{suffix}")

    rename("kv_proj.0", "kv_proj")
    rename("kv_proj.1", "kv_norm")
    rename("q_proj", "q_proj")
    in_w = take("attention.in_proj_weight").chunk(3)  # rows: q, k, v
    in_b = take("attention.in_proj_bias").chunk(3)
    for name, w, b in zip(("w_q", "w_k", "w_v"), in_w, in_b, strict=True):
        ours[f"attention.{name}.weight"], ours[f"attention.{name}.bias"] = w, b
    rename("attention.out_proj", "attention.w_out")
    synapse_depth = _convert_synapses(core, take, rename)
    deep, do_norm = _convert_nlms(core, take, ours)
    ours["start_z"] = take("start_activated_state")
    ours["start_history"] = take("start_trace")
    d_model, memory_length = ours["start_history"].shape
    select = _convert_synchronisation(take, ours, d_model)
    rename("output_projector.0", "output_proj")

    unknown = sorted(set(core) - used)
    if unknown:
        raise CheckpointError("reference state dict has keys this converter does not map",
                              got=unknown[:8], fix="convert a plain ContinuousThoughtMachine "
                              "state dict (models/ctm.py), not a task-specific variant")

    out_dims = int(ours["output_proj.weight"].shape[0])
    shape = tuple(prediction_shape) if prediction_shape is not None else (out_dims,)
    if _prod(shape) != out_dims:
        raise CheckpointError(f"prediction_shape must multiply to the output width {out_dims}",
                              got=shape, fix=f"pass e.g. prediction_shape=({out_dims // 2}, 2)")
    kwargs: dict[str, Any] = {
        "d_model": int(d_model), "memory_length": int(memory_length),
        "d_input": int(ours["q_proj.weight"].shape[0]),
        "backbone_dim": int(ours["kv_proj.weight"].shape[1]),
        "heads": heads, "synapse_depth": synapse_depth,
        "deep_nlms": deep, "do_layernorm_nlm": do_norm,
        "n_synch_action": select["n_action"], "n_synch_out": select["n_out"],
        "neuron_select_type": neuron_select_type or select["kind"],
        "n_random_pairing_self": select["n_self"],
        "prediction_shape": shape, "iterations": iterations, "seed": seed,
    }
    if deep:
        kwargs["memory_hidden_dims"] = int(ours["nlm.w2"].shape[1])
    return ConvertedCTM(config_kwargs=kwargs, state_dict=ours, backbone_state_dict=backbone_sd)


def _strip_wrapper_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _convert_synapses(core: Mapping[str, torch.Tensor], take: Any, rename: Any) -> int:
    if "synapses.1.weight" in core:
        rename("synapses.1", "synapses.linear")
        rename("synapses.3", "synapses.norm")
        return 1
    rename("synapses.first_projection.0", "synapses.first.0")
    rename("synapses.first_projection.1", "synapses.first.1")
    levels = {int(m.group(1)) for k in core
              if (m := re.match(r"synapses\.down_projections\.(\d+)\.", k))}
    for i in sorted(levels):
        for part in ("1", "2"):
            rename(f"synapses.down_projections.{i}.{part}", f"synapses.down.{i}.{part}")
            rename(f"synapses.up_projections.{i}.{part}", f"synapses.up.{i}.{part}")
        rename(f"synapses.skip_lns.{i}", f"synapses.skip_norms.{i}")
    return len(levels) + 1


def _convert_nlms(core: Mapping[str, torch.Tensor], take: Any,
                  ours: dict[str, torch.Tensor]) -> tuple[bool, bool]:
    deep = "trace_processor.0.2.w1" in core
    do_norm = "trace_processor.0.0.layernorm.weight" in core
    for prefix, (w, b, t, norm) in _NLM_LAYERS.items():
        if prefix == "trace_processor.0.2." and not deep:
            continue
        weight = take(prefix + "w1")  # (in, out, D)
        ours[f"nlm.{w}"] = weight.permute(2, 0, 1).contiguous()  # (D, in, out)
        ours[f"nlm.{b}"] = take(prefix + "b1").reshape(weight.shape[2], weight.shape[1])
        ours[f"nlm.{t}"] = take(prefix + "T").reshape(1)
        if do_norm:
            ours[f"nlm.{norm}.weight"] = take(prefix + "layernorm.weight")
            ours[f"nlm.{norm}.bias"] = take(prefix + "layernorm.bias")
    return deep, do_norm


def _convert_synchronisation(take: Any, ours: dict[str, torch.Tensor],
                             d_model: int) -> dict[str, Any]:
    info: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    n_self = []
    for kind in ("action", "out"):
        left = take(f"{kind}_neuron_indices_left").long()
        right = take(f"{kind}_neuron_indices_right").long()
        decay = take(f"decay_params_{kind}")
        n = int(left.numel())
        if right.numel() != n:
            raise CheckpointError(f"{kind} neuron index buffers differ in length",
                                  got=(n, int(right.numel())), fix="check the state dict")
        if decay.numel() == n:
            kinds[kind] = "random-pairing"
            i_idx, j_idx = left, right
            same = (left == right).long()
            n_self.append(int(same.cumprod(0).sum()))  # leading (i, i) pairs
        elif decay.numel() == n * (n + 1) // 2:
            first_last = (torch.equal(left, torch.arange(n)) if kind == "out"
                          else torch.equal(left, torch.arange(d_model - n, d_model)))
            kinds[kind] = "first-last" if first_last and torch.equal(left, right) else "random"
            rows, cols = torch.triu_indices(n, n)
            i_idx, j_idx = left[rows], right[cols]
        else:
            raise CheckpointError(f"decay_params_{kind} has a length matching neither "
                                  f"random-pairing ({n}) nor a dense triangle ({n * (n + 1) // 2})",
                                  got=int(decay.numel()), fix="check the state dict")
        ours[f"synch_{kind}_i"], ours[f"synch_{kind}_j"] = i_idx.clone(), j_idx.clone()
        ours[f"decay_{kind}"] = decay
        info[f"n_{kind}"] = n
    if kinds["action"] != kinds["out"]:
        raise CheckpointError("action and out synchronisation use different strategies",
                              got=kinds, fix="this converter supports one strategy for both")
    info["kind"] = kinds["out"]
    info["n_self"] = min(n_self) if n_self else 0
    if info["kind"] == "random-pairing":
        info["n_self"] = min(info["n_self"], info["n_action"], info["n_out"])
    return info


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def read_reference_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor],
                                                              dict[str, Any]]:
    """``(state_dict, args)`` of a reference checkpoint file.

    Accepts the reference training scripts' files (``{"model_state_dict", "args", ...}``,
    ``args`` an ``argparse.Namespace``) and bare state dicts. Loaded with
    ``weights_only=True`` (``Namespace`` allowed): nothing in the file runs as code.
    """
    import argparse
    import pickle

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"cannot read {path} as a torch file: {exc}", got=str(path),
                              fix="pass a checkpoint saved by the reference training scripts "
                                  "or a state_dict saved with torch.save") from exc
    if isinstance(raw, Mapping) and "model_state_dict" in raw:
        args = raw.get("args")
        args_dict = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
        extra = {k: raw[k] for k in ("iteration",) if k in raw}
        return dict(raw["model_state_dict"]), {**args_dict, **extra}
    if isinstance(raw, Mapping) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return dict(raw), {}
    raise CheckpointError(f"{path} holds neither a reference checkpoint nor a state dict",
                          got=sorted(raw)[:8] if isinstance(raw, Mapping) else type(raw).__name__,
                          fix="pass the file the reference's tasks/*/train.py wrote")


def import_reference_checkpoint(path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                                task: str = "parity", heads: int | None = None,
                                iterations: int | None = None) -> Path:
    """Convert a reference checkpoint file, backbone included, into this library's format.

    ``heads`` and ``iterations`` default to the file's ``args``. The written checkpoint
    loads with ``load_checkpoint``, ``thinkgym ctm eval``, the ``ctm_think`` tool and
    ``CTMThink-v0`` like a bundled one; its ``origin`` field names the source file.
    """
    from thinkgym.ctm_core.checkpoint import save_checkpoint
    from thinkgym.ctm_core.tasks.base import make_task

    if task != "parity":
        raise CheckpointError(f"importing for task {task!r} is not supported", got=task,
                              fix="the reference's other tasks use ResNet backbones, which are "
                                  "not reproduced here; import parity checkpoints "
                                  "(--task parity)")
    sd, args = read_reference_file(path)
    heads = heads if heads is not None else args.get("heads")
    if heads is None:
        raise CheckpointError("the file does not record the number of attention heads",
                              got=sorted(args)[:8], fix="pass heads=... (--heads)")
    out_key = next((k for k in sd if k.endswith("output_projector.0.weight")), None)
    if out_key is None:
        raise CheckpointError("no output projector in the weights", got=sorted(sd)[:8],
                              fix="pass a reference CTM checkpoint")
    length = int(sd[out_key].shape[0]) // 2
    converted = convert_reference_state_dict(
        sd, heads=int(heads), prediction_shape=(length, 2),
        iterations=int(iterations or args.get("iterations") or 75))
    spec = converted.backbone_spec
    if spec is None or spec["kind"] != "reference_parity":
        raise CheckpointError("a parity import needs the reference parity backbone in the "
                              "weights", got=spec, fix="pass a checkpoint trained with "
                              "backbone_type='parity_backbone'")
    model = converted.build().float()
    target = make_task("parity", length=length,
                       embed_dim=int(spec["kwargs"]["d_embedding"]))
    origin = {"source": "SakanaAI/continuous-thought-machines", "file": str(Path(path)),
              "iteration": args.get("iteration"),
              "args": {k: v for k, v in args.items()
                       if isinstance(v, (int, float, str, bool)) or v is None}}
    return save_checkpoint(out, model, target, origin=origin,
                           metrics={"imported": True})
