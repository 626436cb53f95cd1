"""Weight-space merges of PyTorch state dicts: average, SLERP, task arithmetic, TIES, DARE.

Every function is pure: it takes ``Mapping[str, Tensor]`` state dicts (any model, not
only the CTM) and returns a new dict; the inputs are never modified and the output
shares no storage with them. The rules common to all of them:

* Only floating-point tensors are merged. Any other tensor (e.g. the CTM's neuron-pair
  index buffers ``synch_action_i``...) must be equal in every input and is copied.
* Key sets and shapes must match; otherwise :class:`~thinkgym.errors.ConfigError`
  names the first mismatching key (and both shapes).
* Arithmetic runs in float32 (float64 tensors stay float64) and each result is cast back
  to the dtype of the reference input (``base``, or the first state dict).

Methods taking a ``base`` work on *task vectors* ``tau_i = theta_i - theta_base``
(Ilharco et al., 2023, "Editing Models with Task Arithmetic"), which fits a cohort of
challengers fine-tuned from the same best weights.

    >>> import torch
    >>> a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    >>> average([a, b])["w"]
    tensor([2., 4.])
    >>> task_arithmetic({"w": torch.zeros(2)}, [a, b], scale=0.5)["w"]
    tensor([2., 4.])
    >>> merge("ties", {"w": torch.zeros(2)}, [a, b], density=1.0)["w"]
    tensor([2., 4.])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

import torch

from thinkgym.errors import ConfigError

__all__ = [
    "MERGE_METHODS",
    "MergeMethod",
    "StateDict",
    "average",
    "dare",
    "merge",
    "slerp",
    "task_arithmetic",
    "task_vectors",
    "ties",
]

StateDict = Mapping[str, torch.Tensor]
MergeMethod = Literal["average", "slerp", "task_arithmetic", "ties", "dare"]
MERGE_METHODS: tuple[str, ...] = get_args(MergeMethod)
"""Names accepted by :func:`merge`."""

_COLINEAR = 1.0 - 1e-6  # |cos| above this: SLERP's sin(omega) ~ 0, use linear interpolation
_TINY_NORM = 1e-12


# ---------------------------------------------------------------------- checks and helpers
def _check(dicts: Sequence[StateDict], what: str) -> list[str]:
    """Keys of the float tensors to merge; raises on any mismatch between ``dicts``."""
    if not dicts:
        raise ConfigError("no state dicts to merge", field=what, got=[],
                          fix="pass at least one state dict")
    ref = dicts[0]
    for n, other in enumerate(dicts[1:], start=1):
        extra = sorted(set(ref).symmetric_difference(other))
        if extra:
            key = extra[0]
            side = "input 0" if key in ref else f"input {n}"
            raise ConfigError(f"state dicts have different keys: {key!r} is only in {side}",
                              field=what, got=extra[:5],
                              fix="merge state dicts of the same architecture")
        for key, t in ref.items():
            o = other[key]
            if t.shape != o.shape:
                raise ConfigError(f"shape mismatch at key {key!r}: input 0 has "
                                  f"{tuple(t.shape)}, input {n} has {tuple(o.shape)}",
                                  field=what, got=(tuple(t.shape), tuple(o.shape)),
                                  fix="merge state dicts of the same model config")
            if not t.is_floating_point() and not torch.equal(t, o.to(t.device)):
                raise ConfigError(f"non-float tensor {key!r} differs between input 0 and "
                                  f"input {n}; it cannot be merged, only copied",
                                  field=what, got=key, fix="merge models built with the same "
                                  "config (and seed: it chooses the CTM's neuron pairs)")
    return [k for k, t in ref.items() if t.is_floating_point()]


def _calc(t: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """``t`` in the compute dtype: float32, or float64 for float64 tensors."""
    dtype = torch.promote_types(t.dtype, torch.float32)
    return t.detach().to(device=device or t.device, dtype=dtype)


def _assemble(ref: StateDict, merged: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ref``'s key order; merged floats cast back to ``ref``'s dtypes, the rest copied."""
    return {k: (merged[k].to(t.dtype) if k in merged else t.detach().clone())
            for k, t in ref.items()}


def _check_number(value: float, name: str, lo: float = -math.inf, hi: float = math.inf, *,
                  lo_open: bool = False, hi_open: bool = False, example: str) -> float:
    """``float(value)`` if it is a finite number in the interval, else ConfigError."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else
                                                              value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"must be a finite number in {interval}", field=name, got=value,
                          fix=f"pass e.g. {name}={example}")
    return float(value)


def _sum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out


# ---------------------------------------------------------------------- plain merges
def average(state_dicts: Sequence[StateDict],
            weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Weighted mean ``sum_i w_i theta_i / sum_i w_i`` of the float tensors ("model soup").

    Args:
        state_dicts: the models to average (same keys and shapes).
        weights: one non-negative weight per model with a positive sum (normalised here);
            None gives the uniform mean.
    """
    floats = _check(state_dicts, "state_dicts")
    if weights is None:
        weights = [1.0] * len(state_dicts)
    w = [float(x) for x in weights]
    if len(w) != len(state_dicts) or any(not math.isfinite(x) or x < 0 for x in w) \
            or sum(w) <= 0:
        raise ConfigError(f"need {len(state_dicts)} finite weights >= 0 with a positive sum",
                          field="weights", got=list(weights),
                          fix="pass one weight per state dict, e.g. [1.0] * n")
    total = sum(w)
    ref = state_dicts[0]
    merged = {}
    for k in floats:
        dev = ref[k].device
        merged[k] = _sum([_calc(sd[k], dev) * (wi / total)
                          for sd, wi in zip(state_dicts, w, strict=True)])
    return _assemble(ref, merged)


def slerp(a: StateDict, b: StateDict, t: float) -> dict[str, torch.Tensor]:
    """Spherical linear interpolation from ``a`` (``t=0``) to ``b`` (``t=1``), per tensor.

    Each tensor pair is flattened to vectors with angle ``omega`` between them and mixed as
    ``sin((1-t) omega) / sin(omega) * a + sin(t omega) / sin(omega) * b`` (Shoemake, 1985),
    which keeps the norm of two equal-norm vectors. When they are nearly colinear
    (``|cos omega| > 1 - 1e-6``) or either norm is ~0 the angle is undefined and the
    linear interpolation ``(1-t) a + t b`` is used.
    """
    t = _check_number(t, "t", 0.0, 1.0, example="0.5")
    floats = _check([a, b], "state_dicts")
    merged = {}
    for k in floats:
        va, vb = _calc(a[k]).reshape(-1), _calc(b[k], a[k].device).reshape(-1)
        na, nb = va.norm(), vb.norm()
        cos = float(va @ vb / (na * nb)) if min(na, nb) > _TINY_NORM else 1.0
        if abs(cos) > _COLINEAR:
            out = va * (1 - t) + vb * t
        else:
            omega = math.acos(max(-1.0, min(1.0, cos)))
            s = math.sin(omega)
            out = va * (math.sin((1 - t) * omega) / s) + vb * (math.sin(t * omega) / s)
        merged[k] = out.reshape(a[k].shape)
    return _assemble(a, merged)


# ---------------------------------------------------------------------- task vectors
def task_vectors(base: StateDict,
                 state_dicts: Sequence[StateDict]) -> list[dict[str, torch.Tensor]]:
    """``tau_i = theta_i - theta_base`` for every model (Ilharco et al., 2023).

    Only float tensors have a task vector entry (the others are equal by the rules);
    deltas are in the compute dtype (float32, float64 for float64 tensors).
    """
    floats = _check([base, *state_dicts], "state_dicts")
    if not state_dicts:
        raise ConfigError("no fine-tuned state dicts", field="state_dicts", got=[],
                          fix="pass at least one state dict besides base")
    return [{k: _calc(sd[k], base[k].device) - _calc(base[k]) for k in floats}
            for sd in state_dicts]


def _apply(base: StateDict, combined: Mapping[str, torch.Tensor],
           scale: float) -> dict[str, torch.Tensor]:
    """``base + scale * combined`` for the float keys, the rest copied from ``base``."""
    return _assemble(base, {k: _calc(base[k]) + scale * d for k, d in combined.items()})


def task_arithmetic(base: StateDict, state_dicts: Sequence[StateDict],
                    scale: float = 1.0) -> dict[str, torch.Tensor]:
    """``theta_base + scale * sum_i tau_i`` (Ilharco et al., 2023).

    With n models fine-tuned from ``base``, ``scale=1/n`` is their plain average.
    """
    scale = _check_number(scale, "scale", example="1.0")
    taus = task_vectors(base, state_dicts)
    return _apply(base, {k: _sum([tau[k] for tau in taus]) for k in taus[0]}, scale)


def ties(base: StateDict, state_dicts: Sequence[StateDict], density: float = 0.2,
         scale: float = 1.0) -> dict[str, torch.Tensor]:
    """TIES-merging (Yadav et al., 2023, "TIES-Merging: Resolving Interference When Merging
    Models"): trim, elect sign, disjoint merge.

    1. Trim: in each task vector keep the ``density`` fraction of largest-magnitude entries
       (per tensor, as most implementations do; the paper ranks the whole flattened vector)
       and zero the rest. Entries tied with the threshold magnitude are all kept.
    2. Elect: per entry, the sign of the sum of the trimmed task vectors (the sign with the
       larger total magnitude).
    3. Disjoint mean: per entry, the mean of the trimmed values whose sign agrees with the
       elected one (0 if none); the result is ``theta_base + scale * mean``.

    Args:
        density: fraction of each task vector kept, in (0, 1].
        scale: the paper's lambda.
    """
    density = _check_number(density, "density", 0.0, 1.0, lo_open=True, example="0.2")
    scale = _check_number(scale, "scale", example="1.0")
    taus = task_vectors(base, state_dicts)
    combined = {}
    for k in taus[0]:
        deltas = torch.stack([tau[k] for tau in taus])  # (n, *shape)
        flat = deltas.reshape(len(taus), -1)  # (n, P)
        if flat.shape[1]:
            keep = max(1, math.ceil(density * flat.shape[1]))
            mags = flat.abs()
            # k-th largest magnitude per model = (P - keep + 1)-th smallest
            threshold = mags.kthvalue(flat.shape[1] - keep + 1, dim=1, keepdim=True).values
            flat = torch.where(mags >= threshold, flat, torch.zeros_like(flat))
        elected = flat.sum(0).sign()  # (P,)
        agree = (flat.sign() == elected) & (flat != 0)  # (n, P)
        count = agree.sum(0).clamp(min=1)
        mean = torch.where(agree, flat, torch.zeros_like(flat)).sum(0) / count
        combined[k] = mean.reshape(deltas.shape[1:])
    return _apply(base, combined, scale)


def dare(base: StateDict, state_dicts: Sequence[StateDict], drop: float = 0.9, seed: int = 0,
         scale: float = 1.0) -> dict[str, torch.Tensor]:
    """DARE, Drop And REscale (Yu et al., 2023, "Language Models are Super Mario"), then
    the *mean* of the sparsified task vectors: ``theta_base + scale * mean_i tau_i'``.

    Each task-vector entry is dropped with probability ``drop`` and the survivors are
    multiplied by ``1 / (1 - drop)``, which keeps every entry's expected value. The mean
    (not the sum) is taken so that ``drop=0`` gives the plain average of the models;
    ``scale=len(state_dicts)`` gives the DARE + task-arithmetic sum of the paper.

    The drop masks come from ``torch.Generator().manual_seed(seed)`` on the CPU, drawn
    model by model and, within a model, key by key in the state dict's order: the same
    inputs and seed always give the same merge.

    Args:
        drop: drop probability ``p`` in [0, 1).
        seed: seeds the masks.
        scale: multiplies the merged task vector.
    """
    drop = _check_number(drop, "drop", 0.0, 1.0, hi_open=True, example="0.9")
    scale = _check_number(scale, "scale", example="1.0")
    taus = task_vectors(base, state_dicts)
    gen = torch.Generator().manual_seed(int(seed))
    combined: dict[str, torch.Tensor] = {k: torch.zeros_like(d) for k, d in taus[0].items()}
    for tau in taus:
        for k, d in tau.items():
            keep = torch.rand(d.shape, generator=gen) >= drop
            combined[k] = combined[k] + torch.where(keep.to(d.device), d / (1 - drop),
                                                    torch.zeros_like(d))
    return _apply(base, {k: c / len(taus) for k, c in combined.items()}, scale)


# ---------------------------------------------------------------------- dispatcher
def _slerp_pair(base: StateDict, state_dicts: Sequence[StateDict],
                t: float = 0.5) -> dict[str, torch.Tensor]:
    if len(state_dicts) != 2:
        raise ConfigError("slerp merges exactly two state dicts", field="state_dicts",
                          got=len(state_dicts), fix="pass two models (cohort=2), or use "
                          "'average', 'ties' or 'dare' for a larger cohort")
    return slerp(state_dicts[0], state_dicts[1], t)


_DISPATCH: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "average": lambda base, sds, **kw: average(sds, **kw),
    "slerp": _slerp_pair,
    "task_arithmetic": task_arithmetic,
    "ties": ties,
    "dare": dare,
}


def merge(method: MergeMethod, base: StateDict, state_dicts: Sequence[StateDict],
          **kwargs: Any) -> dict[str, torch.Tensor]:
    """Merge ``state_dicts`` with ``method`` (one of :data:`MERGE_METHODS`).

    ``base`` is the model the others were fine-tuned from; ``average`` and ``slerp``
    ignore it (``slerp`` needs exactly two state dicts; pass ``t``, default 0.5).
    ``kwargs`` go to the method's function (an unknown name raises ``TypeError``).
    """
    fn = _DISPATCH.get(method)
    if fn is None:
        raise ConfigError("unknown merge method", field="method", got=method,
                          fix=f"use one of {list(MERGE_METHODS)}")
    return fn(base, state_dicts, **kwargs)
