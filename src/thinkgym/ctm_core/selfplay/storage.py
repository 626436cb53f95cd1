"""Transitions ``(State_t, State_{t+2})`` in memory (``PairBatch``) and on disk (``encode``).

A record stores only what cannot be recomputed:

* ``State_t`` without ``beta``: ``beta`` obeys ``beta_{k+1} = r * beta_k + 1`` from
  ``beta_0 = 1`` (every state the engine makes, and every start state this package
  proposes, follows it), so it is a function of the weights' decays ``r`` and the tick.
  The decays of each weight id are kept once per shard, not per record.
* ``State_{t+2}`` without ``beta`` and with only the two newest columns of the history
  window ``A``: the other ``M - 2`` columns are ``State_t``'s shifted by two.
* Provenance: ``weight_id`` (which weights produced the pair: resolve it with
  ``WeightManager.resolve``) and ``data_id`` (task, task config, split, item index:
  enough to regenerate the input and recompute K/V with those weights; K/V are never
  stored), the tick ``t`` and the losses and certainties at ``t``, ``t+1``, ``t+2``.

With ``dtype=torch.float16`` the state tensors are stored in half precision (about half
the bytes; ~3 significant digits); losses, certainties and decays stay float32.

    >>> import torch
    >>> from thinkgym.ctm_core.state import TENSOR_FIELDS
    >>> shapes = {"z": (4,), "A": (4, 3), "alpha_action": (2,), "beta_action": (2,),
    ...           "alpha_out": (2,), "beta_out": (2,), "o": (6,)}
    >>> r = {"w": (torch.full((2,), 0.5), torch.full((2,), 0.5))}
    >>> tick = torch.tensor([3])
    >>> def state(t):
    ...     s = {k: torch.randn(1, *v) for k, v in shapes.items()}
    ...     s["beta_action"] = s["beta_out"] = beta_for_ticks(r["w"][0], t)
    ...     return s
    >>> before, after = state(tick), state(tick + 2)
    >>> after["A"][:, :, :1] = before["A"][:, :, 2:]     # the shared history columns
    >>> batch = PairBatch(before, after, tick, torch.zeros(1, 3), torch.zeros(1, 3),
    ...                   ["w"], [DataId("parity", {"length": 4}, "train", 7)])
    >>> back = decode(encode(batch, r))
    >>> all(torch.allclose(back.state_t2[k], after[k]) for k in TENSOR_FIELDS)
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from thinkgym.ctm_core.state import TENSOR_FIELDS, StatePack
from thinkgym.errors import ConfigError

if TYPE_CHECKING:
    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.ctm_core.tasks.base import Task, TaskBatch

__all__ = [
    "RECORD_FORMAT",
    "DataId",
    "Decays",
    "PairBatch",
    "beta_for_ticks",
    "decays_of",
    "decode",
    "encode",
    "regenerate",
]

RECORD_FORMAT = "thinkgym.selfplay.pairs/1"
_STORED = ("z", "A", "alpha_action", "alpha_out", "o")  # beta is recomputed
_SPLITS = ("train", "test")

Decays = tuple[torch.Tensor, torch.Tensor]
"""``(r_action (Sa,), r_out (So,))``: the synchronisation decays of one set of weights."""


@dataclass(frozen=True)
class DataId:
    """Which task item a rollout row came from: regenerates its input and target."""

    task: str
    """Registered task name (``parity``, ``digits``, ...)."""
    task_config: Mapping[str, Any]
    """The task's config dict (``TaskConfig.to_dict()``)."""
    split: str
    """``train`` or ``test``."""
    index: int
    """Item index within the split."""

    def task_key(self) -> str:
        """Canonical JSON of (task, config): rows with equal keys share one task object."""
        return json.dumps([self.task, dict(self.task_config)], sort_keys=True)


@dataclass
class PairBatch:
    """N transitions ``(State_t, State_{t+2})`` with provenance, all tensors float32.

    ``state_t`` / ``state_t2`` map every ``StatePack`` field name to an ``(N, ...)``
    tensor. Rows may come from different ticks: ``tick[i]`` is row i's ``t``.
    """

    state_t: dict[str, torch.Tensor]
    state_t2: dict[str, torch.Tensor]
    tick: torch.Tensor
    """(N,) long: the tick t of State_t."""
    losses: torch.Tensor
    """(N, 3): task loss of the readout at t, t+1, t+2."""
    certainties: torch.Tensor
    """(N, 3): certainty at t, t+1, t+2."""
    weight_ids: list[str]
    """Per row: the id of the weights that produced it."""
    data_ids: list[DataId]
    """Per row: the task item it came from."""

    def __post_init__(self) -> None:
        n = int(self.tick.shape[0])
        sizes = {len(self.weight_ids), len(self.data_ids), int(self.losses.shape[0]),
                 int(self.certainties.shape[0]),
                 *(int(t.shape[0]) for t in (*self.state_t.values(), *self.state_t2.values()))}
        if sizes != {n}:
            raise ConfigError("every PairBatch field must have the same number of rows",
                              field="PairBatch", got=sorted(sizes),
                              fix="build it from row-aligned tensors and lists")
        for name, fields in (("state_t", self.state_t), ("state_t2", self.state_t2)):
            if set(fields) != set(TENSOR_FIELDS):
                raise ConfigError(f"PairBatch.{name} must hold exactly the StatePack fields",
                                  field=name, got=sorted(fields), fix=f"pass {TENSOR_FIELDS}")

    def __len__(self) -> int:
        return int(self.tick.shape[0])

    def before(self) -> StatePack:
        """State_t as a ``StatePack`` (its ``tick`` is row 0's; rows' own ticks: ``tick``)."""
        return StatePack.from_tensors(self.state_t, int(self.tick[0]) if len(self) else 0)

    def after(self) -> StatePack:
        """State_{t+2} as a ``StatePack`` (``tick`` as in :meth:`before`, plus 2)."""
        return StatePack.from_tensors(self.state_t2, int(self.tick[0]) + 2 if len(self) else 2)

    def index(self, idx: Sequence[int] | torch.Tensor) -> PairBatch:
        """The rows ``idx`` (a list or a long tensor), in that order."""
        rows = torch.as_tensor(idx, dtype=torch.long)
        picked = rows.tolist()
        return PairBatch(
            {k: v[rows] for k, v in self.state_t.items()},
            {k: v[rows] for k, v in self.state_t2.items()},
            self.tick[rows], self.losses[rows], self.certainties[rows],
            [self.weight_ids[i] for i in picked], [self.data_ids[i] for i in picked])

    @classmethod
    def cat(cls, batches: Sequence[PairBatch]) -> PairBatch:
        """Rows of every batch, in order."""
        if not batches:
            raise ConfigError("PairBatch.cat needs at least one batch", field="batches",
                              got=0, fix="skip the call when there is nothing to join")
        return cls(
            {k: torch.cat([b.state_t[k] for b in batches]) for k in TENSOR_FIELDS},
            {k: torch.cat([b.state_t2[k] for b in batches]) for k in TENSOR_FIELDS},
            torch.cat([b.tick for b in batches]),
            torch.cat([b.losses for b in batches]),
            torch.cat([b.certainties for b in batches]),
            [w for b in batches for w in b.weight_ids],
            [d for b in batches for d in b.data_ids])

    def nbytes(self) -> int:
        """Bytes of the in-memory tensors (what a stored record saves against)."""
        tensors = [*self.state_t.values(), *self.state_t2.values(), self.tick, self.losses,
                   self.certainties]
        return sum(t.numel() * t.element_size() for t in tensors)


def decays_of(model: ContinuousThoughtMachine) -> Decays:
    """The model's synchronisation decays ``r = exp(-clamp(decay, 0, 15))`` (detached)."""
    with torch.no_grad():
        r_action, r_out = model._decays()
    return r_action.detach().float().cpu().clone(), r_out.detach().float().cpu().clone()


def beta_for_ticks(r: torch.Tensor, ticks: torch.Tensor) -> torch.Tensor:
    """``beta`` at each tick: ``beta_0 = 1``, ``beta_{k+1} = r * beta_k + 1``.

    ``r`` (S,), ``ticks`` (N,) -> (N, S), iterated in float32 exactly as the engine does.
    """
    ticks = torch.as_tensor(ticks, dtype=torch.long).reshape(-1)
    if len(ticks) and int(ticks.min()) < 0:
        raise ConfigError("ticks must be >= 0", field="ticks", got=int(ticks.min()),
                          fix="pass the tick index of the state (0 = the start state)")
    r = r.float()
    out = torch.empty(len(ticks), r.shape[0])
    beta = torch.ones_like(r)
    top = int(ticks.max()) if len(ticks) else 0
    for k in range(top + 1):
        if k:
            beta = r * beta + 1.0
        hit = ticks == k
        if bool(hit.any()):
            out[hit] = beta
    return out


def _compact(t: torch.Tensor) -> torch.Tensor:
    """``t`` owning exactly its own memory (copied only when it is a view).

    ``torch.save`` of a view writes its whole underlying buffer: rows sliced from a
    rollout would otherwise store the entire rollout (``.contiguous()`` keeps the view).
    """
    if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def encode(batch: PairBatch, decays: Mapping[str, Decays],
           dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The compact, ``torch.save``-able form of ``batch`` (see the module docstring).

    ``decays`` maps each weight id in ``batch`` to its :func:`decays_of`.
    """
    if dtype not in (torch.float16, torch.float32, torch.bfloat16):
        raise ConfigError("storage dtype must be float16, bfloat16 or float32", field="dtype",
                          got=str(dtype), fix="pass dtype=torch.float16 (compact) or float32")
    weights = sorted(set(batch.weight_ids))
    missing = [w for w in weights if w not in decays]
    if missing:
        raise ConfigError("no decays for some weight ids of the batch", field="decays",
                          got=missing, fix="pass {weight_id: decays_of(model)} for each")
    tasks = sorted({d.task_key() for d in batch.data_ids})
    memory = batch.state_t["A"].shape[-1]
    new_cols = min(2, memory)
    t2 = {k: batch.state_t2[k] for k in _STORED if k != "A"}
    t2["A_new"] = batch.state_t2["A"][..., memory - new_cols:]
    return {
        "format": RECORD_FORMAT,
        "dtype": str(dtype).removeprefix("torch."),
        "t": {k: _compact(batch.state_t[k].to(dtype)) for k in _STORED},
        "t2": {k: _compact(v.to(dtype)) for k, v in t2.items()},
        "tick": _compact(batch.tick.to(torch.int32)),
        "losses": _compact(batch.losses.float()),
        "certainties": _compact(batch.certainties.float()),
        "weight_ids": weights,
        "weight_index": torch.tensor([weights.index(w) for w in batch.weight_ids],
                                     dtype=torch.int32),
        "decays": {w: {"action": _compact(decays[w][0].float()),
                       "out": _compact(decays[w][1].float())}
                   for w in weights},
        "tasks": tasks,
        "task_index": torch.tensor([tasks.index(d.task_key()) for d in batch.data_ids],
                                   dtype=torch.int32),
        "split_index": torch.tensor([_SPLITS.index(d.split) for d in batch.data_ids],
                                    dtype=torch.int8),
        "item_index": torch.tensor([d.index for d in batch.data_ids], dtype=torch.int64),
    }


def decode(record: Mapping[str, Any]) -> PairBatch:
    """Inverse of :func:`encode` (float32 tensors; beta recomputed from the decays)."""
    if not isinstance(record, Mapping) or record.get("format") != RECORD_FORMAT:
        got = record.get("format") if isinstance(record, Mapping) else type(record).__name__
        raise ConfigError("not a self-play pair record", field="format", got=got,
                          fix=f"decode what encode() wrote ({RECORD_FORMAT})")
    tick = record["tick"].long()
    weight_ids = [record["weight_ids"][i] for i in record["weight_index"].tolist()]
    state_t = {k: record["t"][k].float() for k in _STORED}
    a_t, a_new = state_t["A"], record["t2"]["A_new"].float()
    memory = a_t.shape[-1]
    state_t2 = {k: record["t2"][k].float() for k in _STORED if k != "A"}
    state_t2["A"] = torch.cat((a_t[..., a_new.shape[-1]:], a_new), dim=-1)[..., -memory:]
    for name, kind in (("beta_action", "action"), ("beta_out", "out")):
        width = state_t["alpha_" + kind].shape[-1]
        beta_t, beta_t2 = torch.empty(len(tick), width), torch.empty(len(tick), width)
        for w in set(weight_ids):
            rows = torch.tensor([i for i, x in enumerate(weight_ids) if x == w])
            r = record["decays"][w][kind]
            beta_t[rows] = beta_for_ticks(r, tick[rows])
            beta_t2[rows] = beta_for_ticks(r, tick[rows] + 2)
        state_t[name], state_t2[name] = beta_t, beta_t2
    tasks = [json.loads(t) for t in record["tasks"]]
    data_ids = [DataId(tasks[ti][0], tasks[ti][1], _SPLITS[si], int(ii))
                for ti, si, ii in zip(record["task_index"].tolist(),
                                      record["split_index"].tolist(),
                                      record["item_index"].tolist(), strict=True)]
    return PairBatch(state_t, state_t2, tick, record["losses"].float(),
                     record["certainties"].float(), weight_ids, data_ids)


_TASK_CACHE: dict[str, Task] = {}


def regenerate(data_ids: Sequence[DataId]) -> TaskBatch:
    """The inputs and targets of ``data_ids`` (one task), regenerated from the task."""
    from thinkgym.ctm_core.tasks.base import TaskBatch, make_task

    keys = {d.task_key() for d in data_ids}
    if len(keys) != 1:
        raise ConfigError("regenerate needs rows of exactly one task", field="data_ids",
                          got=sorted(keys)[:3], fix="group rows by DataId.task_key() first")
    key = keys.pop()
    if key not in _TASK_CACHE:
        _TASK_CACHE[key] = make_task(data_ids[0].task, dict(data_ids[0].task_config))
    task = _TASK_CACHE[key]
    inputs: list[torch.Tensor | None] = [None] * len(data_ids)
    targets: list[torch.Tensor | None] = [None] * len(data_ids)
    for split in _SPLITS:
        rows = [i for i, d in enumerate(data_ids) if d.split == split]
        if rows:
            part = task.batch([data_ids[i].index for i in rows], split)  # type: ignore[arg-type]
            for j, i in enumerate(rows):
                inputs[i], targets[i] = part.inputs[j], part.targets[j]
    return TaskBatch(inputs=torch.stack(inputs), targets=torch.stack(targets))  # type: ignore[arg-type]
