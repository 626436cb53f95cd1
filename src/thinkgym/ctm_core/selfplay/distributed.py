"""The self-play generator's three stages as Ray actors, for more than one machine.

``run_distributed`` does what ``DataGenerator.run`` does (same rollout specs, same
rollouts, same filter, same buffer layout, the same ``GenerationReport``), with every
stage in its own Ray actor, so the stages can sit on different nodes::

    driver (run_distributed)        picks the rollout specs (DataGenerator.specs), counts,
      |                             bounds the chunks in flight (ray.wait), kills the actors
      v
    ProducerActor x producers       rollout k runs on producer k % producers; each call
      |  object store: row parts    returns one chunk, split along the batch into parts
      v
    FilterActor x filter_workers    rows [w*B/W, (w+1)*B/W) of every chunk go to filter
      |  object store: PairBatch    actor w, which carries a StreamingFilter per rollout
      v
    WriterActor x writers           DiskReplayBuffer.save_pairs (flock + atomic rename);
                                    returns the count written to the driver

Chunks travel between actors through Ray's object store: the driver passes object
references along and never holds the tensors. At most ``max_in_flight`` chunks are
submitted and not yet written (back-pressure: the driver ``ray.wait``-s for writes to
land before it asks a producer for another chunk), so the object store holds a bounded
number of chunks, never a whole rollout. A filter actor's carry needs its rows' chunks
in order: Ray runs the tasks one caller submits to a (synchronous, single-threaded,
never retried) actor in submission order, and the driver is that one caller; the actor
checks the ticks are contiguous anyway and raises if not.

The same ``cfg`` accepts and writes the same pairs as ``DataGenerator.run`` in any
mode: the specs come from ``DataGenerator.specs`` and the chunks from
``DataGenerator.chunks``, whose randomness depends only on ``cfg.seed`` and the rollout
index. Rows of one chunk land in up to ``filter_workers`` shards instead of one, in the
order the writes finish; the buffer holds the same pairs as long as ``capacity`` is not
exceeded (FIFO eviction then drops by arrival order). ``cfg.mode`` is not used;
``cfg.filter_workers``, ``cfg.writers`` and ``cfg.queue_size`` give the defaults of the
actor counts and of ``max_in_flight``.

**On a cluster.** Install thinkgym with the extra (``pip install 'thinkgym[ray]'``) in
the same Python on every node, then::

    node 1$ ray start --head --num-cpus=8
    node 2$ ray start --address=<head-ip>:6379 --num-cpus=8

and, on any node (the driver)::

    import ray
    from thinkgym.ctm_core.selfplay.distributed import run_distributed
    from thinkgym.ctm_core.selfplay.generator import GeneratorConfig

    ray.init(address="auto")            # join the cluster
    report = run_distributed("/shared/run/weights", "/shared/run/replay",
                             GeneratorConfig(batches=64, seed=1),
                             producers=12, filter_workers=3, writers=1)

Without ``ray.init`` first, ``run_distributed`` starts a local Ray instance on this
machine. **Shared filesystem**: the driver and every node that may host an actor open
``weights_root`` (driver and producers read the weights, and the ONM file if given) and
``buffer_root`` (driver and writers) at the *same absolute path*, so both must live on a
shared filesystem (NFS, CephFS, Lustre, ...). The buffer's guarantees rest on ``fcntl.flock``
on ``buffer_root/.lock`` and on ``os.replace`` within a directory: both hold on a local
POSIX filesystem. Linux maps ``flock`` on NFS to NFS byte-range locks: use NFSv4, or
v3 with a working lock manager, and no ``nolock`` / ``local_lock=flock`` mount option
(those keep locks node-local, and writers on two nodes would race for sequence numbers).
Directory attribute caching can delay another node's view of new shards by seconds
(counts are exact once the caches expire). Writers on one node sidestep cross-node
locking.

Resources per actor: ``ACTOR_CPUS`` (a producer takes a whole CPU for the rollout;
filters and writers are light), overridable with ``actor_cpus``; every actor runs torch
with one thread. ``run_distributed`` refuses a plan the cluster's CPUs cannot host
(Ray would wait forever for the missing resources).

    >>> from thinkgym.ctm_core.selfplay.distributed import ACTOR_CPUS
    >>> ACTOR_CPUS
    {'producer': 1.0, 'filter': 0.25, 'writer': 0.25}
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import torch

from thinkgym.ctm_core.selfplay.filters import Chunk, FilterRule, StreamingFilter
from thinkgym.ctm_core.selfplay.generator import (
    DataGenerator,
    GenerationReport,
    GeneratorConfig,
    RolloutSpec,
    _histogram,
    buffer_for_source,
)
from thinkgym.ctm_core.selfplay.storage import Decays, PairBatch
from thinkgym.errors import ConfigError, DependencyNotInstalled, ThinkgymError

if TYPE_CHECKING:
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

__all__ = [
    "ACTOR_CPUS",
    "FilterActor",
    "FilterStats",
    "ProducerActor",
    "WriteJob",
    "WriterActor",
    "row_bounds",
    "run_distributed",
]

logger = logging.getLogger(__name__)

ACTOR_CPUS: dict[str, float] = {"producer": 1.0, "filter": 0.25, "writer": 0.25}
"""Ray ``num_cpus`` of each actor kind (what the scheduler reserves, not a thread count)."""


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise DependencyNotInstalled(
            "ray is needed to run the self-play generator across machines",
            fix="pip install 'thinkgym[ray]' (or run DataGenerator.run on one machine)",
        ) from err
    return ray


def row_bounds(batch_size: int, parts: int) -> list[int]:
    """Row boundaries of ``parts`` near-equal slices of a batch (as ``DataGenerator``'s
    pipeline splits a chunk among its filter workers).

    >>> row_bounds(10, 3)
    [0, 3, 7, 10]
    """
    return [int(b) for b in np.linspace(0, batch_size, parts + 1).round()]


def _owned_rows(chunk: Chunk, start: int, stop: int) -> Chunk:
    # Copies: a view would ship the whole chunk's storage with every part.
    part = chunk.rows(start, stop)
    part.states = {k: v.clone() for k, v in part.states.items()}
    part.losses, part.certainty = part.losses.clone(), part.certainty.clone()
    return part


# ---------------------------------------------------------------------- actors
class ProducerActor:
    """Stage 1: runs rollouts chunk by chunk, keeping the rollout's state between calls.

    A plain class: ``run_distributed`` wraps it with ``ray.remote``; it also works
    in-process. Only one rollout is in progress at a time, so its memory is one chunk
    plus the model and the current state.

    Args:
        weights_root: a ``WeightManager`` directory (absolute path, shared filesystem).
        onm_path: an ONM file (``save_onm``) proposing start states; None: learned start.
    """

    def __init__(self, weights_root: str | os.PathLike[str],
                 onm_path: str | os.PathLike[str] | None = None) -> None:
        from thinkgym.ctm_core.selfplay.onm import load_onm
        from thinkgym.ctm_core.selfplay.weights import WeightManager

        torch.set_num_threads(1)
        onm = load_onm(onm_path) if onm_path is not None else None
        # chunks() reads only the weights and the ONM: producers need no buffer.
        self._gen = DataGenerator(WeightManager(weights_root), cast("DiskReplayBuffer", None),
                                  onm)
        self._chunks: Iterator[Chunk] | None = None
        self._rollout, self._next_index = -1, 0

    def next_chunk(self, spec: RolloutSpec, cfg: GeneratorConfig, index: int,
                   parts: int) -> Chunk | tuple[Chunk, ...]:
        """Chunk ``index`` of ``spec``'s rollout, split into ``parts`` row slices.

        ``index == 0`` starts the rollout (dropping any other in progress); later indices
        must follow in order. Returns a tuple of ``parts`` chunks (a lone chunk when
        ``parts == 1``: Ray's ``num_returns`` convention).
        """
        if index == 0:
            self._chunks = self._gen.chunks(spec, cfg)
            self._rollout, self._next_index = spec.rollout, 0
        if self._chunks is None or (spec.rollout, index) != (self._rollout, self._next_index):
            raise ThinkgymError(
                "producer asked for a chunk out of order",
                got={"rollout": spec.rollout, "index": index,
                     "expected": (self._rollout, self._next_index)},
                fix="ask for chunks 0, 1, ... of one rollout in order (run_distributed does)")
        chunk = next(self._chunks, None)
        if chunk is None:
            raise ThinkgymError("rollout has no chunk at this index",
                                got={"rollout": spec.rollout, "index": index},
                                fix="ask for ceil(cfg.ticks / cfg.chunk_ticks) chunks")
        self._next_index += 1
        if chunk.last:
            self._chunks = None
        bounds = row_bounds(len(chunk), parts)
        out = tuple(_owned_rows(chunk, a, b) for a, b in itertools.pairwise(bounds))
        return out[0] if parts == 1 else out


class WriteJob(NamedTuple):
    """Accepted pairs of one chunk part, ready for ``DiskReplayBuffer.save_pairs``."""

    pairs: PairBatch
    buffer: str
    decays: dict[str, Decays]


@dataclass
class FilterStats:
    """What one filter actor compared and kept (summed over its rollouts)."""

    evaluated: int = 0
    accepted: int = 0
    accepted_by_tick: Counter[int] = field(default_factory=Counter)
    open_rollouts: list[int] = field(default_factory=list)
    """Rollouts whose last chunk has not arrived (empty after a complete run)."""


class FilterActor:
    """Stage 2: a ``StreamingFilter`` per rollout in progress, for this actor's rows.

    Chunks of several rollouts (from several producers) may interleave; each rollout's
    chunks must arrive in tick order, which is checked: a gap would silently skip pairs.
    """

    def __init__(self, rule: FilterRule) -> None:
        torch.set_num_threads(1)
        StreamingFilter(rule)  # validates the rule here, not at the first chunk
        self.rule: FilterRule = rule
        self._open: dict[int, tuple[StreamingFilter, int]] = {}  # rollout -> filter, next tick
        self._closed: set[int] = set()
        self._stats = FilterStats()

    def push(self, chunk: Chunk) -> WriteJob | None:
        """Compare every pair ``chunk`` completes; the accepted ones as a write job."""
        if chunk.rollout in self._closed:
            raise ThinkgymError("chunk of a finished rollout", got=chunk.rollout,
                                fix="send each rollout's chunks in tick order")
        filt, expected = self._open.get(chunk.rollout, (StreamingFilter(self.rule), None))
        if expected is not None and chunk.first_tick != expected:
            raise ThinkgymError("chunks of a rollout arrived out of tick order",
                                got={"rollout": chunk.rollout, "first_tick": chunk.first_tick,
                                     "expected": expected},
                                fix="send each rollout's chunks in tick order")
        evaluated, accepted = filt.evaluated, filt.accepted
        pairs = filt.push(chunk)
        self._stats.evaluated += filt.evaluated - evaluated
        self._stats.accepted += filt.accepted - accepted
        if chunk.last:
            self._open.pop(chunk.rollout, None)
            self._closed.add(chunk.rollout)
        else:
            self._open[chunk.rollout] = (filt, chunk.first_tick + chunk.ticks)
        if pairs is None:
            return None
        self._stats.accepted_by_tick.update(pairs.tick.tolist())
        if chunk.decays is None:
            raise ThinkgymError("chunk carries no decays", got=chunk.weight_id,
                                fix="make chunks with DataGenerator.chunks")
        return WriteJob(pairs, buffer_for_source(chunk.source), {chunk.weight_id: chunk.decays})

    def stats(self) -> FilterStats:
        """Counts so far (a copy)."""
        s = self._stats
        return FilterStats(s.evaluated, s.accepted, Counter(s.accepted_by_tick),
                           sorted(self._open))


class WriterActor:
    """Stage 3: persists write jobs to a ``DiskReplayBuffer`` (shared by all writers).

    Args:
        buffer_root: the buffer directory (absolute path, shared filesystem).
        capacity: pairs per sub-buffer (every writer of a root must use the same).
        dtype: storage dtype of the state tensors.
    """

    def __init__(self, buffer_root: str | os.PathLike[str], capacity: int,
                 dtype: torch.dtype) -> None:
        from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

        torch.set_num_threads(1)
        self.buffer = DiskReplayBuffer(buffer_root, capacity, dtype)

    def write(self, job: WriteJob | None) -> int:
        """Save ``job``'s pairs to its sub-buffer; the count written (0 for None)."""
        if job is None:
            return 0
        return self.buffer.save_pairs(job.pairs, job.buffer, job.decays)


# ---------------------------------------------------------------------- driver
def _schedule(specs: Sequence[RolloutSpec], producers: int, n_chunks: int
              ) -> Iterator[tuple[int, RolloutSpec, int]]:
    """``(producer, spec, chunk index)`` in submission order: rollout k on producer
    k % producers, producers interleaved chunk by chunk so all of them stay busy."""
    lanes = [[(p, spec, i) for spec in specs[p::producers] for i in range(n_chunks)]
             for p in range(producers)]
    for step in itertools.zip_longest(*lanes):
        yield from (job for job in step if job is not None)


def _check_counts(counts: Mapping[str, Any]) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError("must be an int >= 1", field=name, got=value,
                              fix=f"pass {name}=1 or more")


def _check_resources(ray: Any, need: float, plan: Mapping[str, int]) -> None:
    have = float(ray.cluster_resources().get("CPU", 0.0))
    if need > have + 1e-9:
        raise ConfigError("the Ray cluster has too few CPUs for these actors",
                          field="producers", got={"need": need, "have": have, **plan},
                          fix="use fewer producers/filter_workers/writers, lower actor_cpus, "
                              "or add nodes (ray start --address=...)")


class _Actors(NamedTuple):
    producers: list[Any]
    filters: list[Any]
    writers: list[Any]

    def all(self) -> list[Any]:
        return [*self.producers, *self.filters, *self.writers]


def _start_actors(ray: Any, cpus: Mapping[str, float], plan: Mapping[str, int], *,
                  weights_root: str, onm_path: str | None, rule: FilterRule,
                  buffer_root: str, capacity: int, dtype: torch.dtype) -> _Actors:
    def remote(cls: type, kind: str) -> Any:
        # max_task_retries=0: a retried task may run out of order (Ray's ordering caveat).
        return ray.remote(num_cpus=cpus[kind], max_restarts=0, max_task_retries=0)(cls)

    producer, filt, writer = (remote(ProducerActor, "producer"), remote(FilterActor, "filter"),
                              remote(WriterActor, "writer"))
    return _Actors([producer.remote(weights_root, onm_path) for _ in range(plan["producers"])],
                   [filt.remote(rule) for _ in range(plan["filter_workers"])],
                   [writer.remote(buffer_root, capacity, dtype) for _ in range(plan["writers"])])


class _Driver:
    """Submits the chunks of every rollout through the three stages, counting writes."""

    def __init__(self, ray: Any, actors: _Actors, gen: DataGenerator, cfg: GeneratorConfig,
                 report: GenerationReport, max_in_flight: int,
                 progress: Callable[[GenerationReport], None] | None) -> None:
        self.ray, self.actors, self.gen, self.cfg = ray, actors, gen, cfg
        self.report, self.progress = report, progress
        self.parts = len(actors.filters)
        self.max_refs = max_in_flight * self.parts  # one write per part of each chunk
        self.in_flight: dict[Any, tuple[int, str]] = {}  # write ref -> rollout, buffer
        self.remaining: dict[int, int] = {}  # rollout -> writes not yet confirmed
        self.writes = itertools.count()

    def run(self, specs: Sequence[RolloutSpec]) -> None:
        n_chunks = -(-self.cfg.ticks // self.cfg.chunk_ticks)
        for p, spec, index in _schedule(specs, len(self.actors.producers), n_chunks):
            if index == 0:
                self.gen._count_rollout(self.report, spec)
                self.remaining[spec.rollout] = n_chunks * self.parts
            while len(self.in_flight) + self.parts > self.max_refs:
                self._collect()
            self._submit(p, spec, index)
        while self.in_flight:
            self._collect()

    def _submit(self, p: int, spec: RolloutSpec, index: int) -> None:
        call = self.actors.producers[p].next_chunk
        parts = call.options(num_returns=self.parts).remote(spec, self.cfg, index, self.parts)
        parts = [parts] if self.parts == 1 else parts
        name = buffer_for_source(spec.source)
        for w, part in enumerate(parts):
            job = self.actors.filters[w].push.remote(part)
            writer = self.actors.writers[next(self.writes) % len(self.actors.writers)]
            self.in_flight[writer.write.remote(job)] = (spec.rollout, name)

    def _collect(self) -> None:
        """Wait for at least one write; count every finished one (re-raises stage errors)."""
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
        for ref, written in zip(ready, self.ray.get(ready), strict=True):
            rollout, name = self.in_flight.pop(ref)
            if written:
                self.report.pairs_written += written
                self.report.written_by_buffer[name] = (
                    self.report.written_by_buffer.get(name, 0) + written)
            self.remaining[rollout] -= 1
            if not self.remaining[rollout] and self.progress is not None:
                self.progress(self.report)


def run_distributed(weights_root: str | os.PathLike[str], buffer_root: str | os.PathLike[str],
                    cfg: GeneratorConfig, *, producers: int = 1,
                    filter_workers: int | None = None, writers: int | None = None,
                    capacity: int = 100_000, dtype: torch.dtype = torch.float16,
                    max_in_flight: int | None = None,
                    onm_path: str | os.PathLike[str] | None = None,
                    actor_cpus: Mapping[str, float] | None = None,
                    progress: Callable[[GenerationReport], None] | None = None,
                    ) -> GenerationReport:
    """Generate ``cfg``'s rollouts with Ray actors; the exact counts (``report.mode == "ray"``).

    Args:
        weights_root: ``WeightManager`` directory, shared by every node (see module doc).
        buffer_root: ``DiskReplayBuffer`` directory, shared by every node.
        cfg: what to generate (seed, batches, ticks, rule, ...), as for ``DataGenerator``.
        producers: rollout actors (rollout k runs on producer k % producers).
        filter_workers: filter actors (default ``cfg.filter_workers``; at most
            ``cfg.batch_size`` are used, one per row slice).
        writers: writer actors (default ``cfg.writers``).
        capacity: pairs per sub-buffer, as ``DiskReplayBuffer``.
        dtype: storage dtype, as ``DiskReplayBuffer``.
        max_in_flight: chunks submitted and not yet written (default
            ``producers * (cfg.queue_size + 1)``): bounds the object store's use.
        onm_path: an ONM file (``save_onm``) for start states; None: the learned start.
        actor_cpus: overrides of ``ACTOR_CPUS`` (``{"producer": 2.0}``).
        progress: called with the report each time a rollout's writes all landed.
    """
    ray = _require_ray()
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
    from thinkgym.ctm_core.selfplay.weights import WeightManager

    plan = {"producers": producers,
            "filter_workers": cfg.filter_workers if filter_workers is None else filter_workers,
            "writers": cfg.writers if writers is None else writers,
            "max_in_flight": producers * (cfg.queue_size + 1) if max_in_flight is None
            else max_in_flight}
    _check_counts(plan)
    plan["filter_workers"] = min(plan["filter_workers"], cfg.batch_size)
    cpus = {**ACTOR_CPUS, **(actor_cpus or {})}
    if set(cpus) != set(ACTOR_CPUS) or any(v < 0 for v in cpus.values()):
        raise ConfigError("unknown actor kind or negative CPUs", field="actor_cpus",
                          got=dict(actor_cpus or {}), fix=f"use keys {sorted(ACTOR_CPUS)}, "
                          "values >= 0")
    # Absolute paths: actors on other nodes (or another cwd) open the same directories.
    weights_dir, buffer_dir = str(Path(weights_root).resolve()), str(Path(buffer_root).resolve())
    onm_file = str(Path(onm_path).resolve()) if onm_path is not None else None

    started = time.perf_counter()
    # The driver's generator only picks specs; opening the buffer here validates
    # capacity and dtype and creates the layout before any writer starts.
    gen = DataGenerator(WeightManager(weights_dir), DiskReplayBuffer(buffer_dir, capacity, dtype))
    specs = list(gen.specs(cfg))
    if not ray.is_initialized():
        logger.info("Ray is not initialised: starting a local instance (ray.init())")
        ray.init()
    _check_resources(ray, sum(cpus[k] * plan[n] for k, n in (
        ("producer", "producers"), ("filter", "filter_workers"), ("writer", "writers"))),
        plan)
    report = GenerationReport(mode="ray", rule=cfg.rule)
    actors = _start_actors(ray, cpus, plan, weights_root=weights_dir, onm_path=onm_file,
                           rule=cfg.rule, buffer_root=buffer_dir, capacity=capacity,
                           dtype=dtype)
    try:
        _Driver(ray, actors, gen, cfg, report, plan["max_in_flight"], progress).run(specs)
        stats: list[FilterStats] = ray.get([f.stats.remote() for f in actors.filters])
    finally:
        for actor in actors.all():
            ray.kill(actor)
    if open_rollouts := sorted({r for s in stats for r in s.open_rollouts}):
        raise ThinkgymError("some rollouts never sent their last chunk", got=open_rollouts,
                            fix="report this: run_distributed submits every chunk")
    report.pairs_evaluated = sum(s.evaluated for s in stats)
    report.pairs_accepted = sum(s.accepted for s in stats)
    report.accepted_by_tick = _histogram(sum((s.accepted_by_tick for s in stats), Counter()))
    report.seconds = time.perf_counter() - started
    logger.info("ray generation: %d rollouts, %d/%d pairs accepted, %d written in %.1f s",
                report.rollouts, report.pairs_accepted, report.pairs_evaluated,
                report.pairs_written, report.seconds)
    return report
