"""``DataGenerator``: long rollouts -> filtered ``(State_t, State_{t+2})`` pairs -> disk.

Three stages joined by bounded queues (a full queue blocks its producer: memory stays
bounded by ``queue_size`` chunks per queue, never by the rollout length)::

    producer (calling process)      for each rollout batch: pick weights (best with
      |  one queue per worker       probability p_best, else an expert), regenerate the
      v                             items, K/V once, then ``ticks`` ticks in chunks of
    filter workers (processes)      ``chunk_ticks``; each chunk is split along the batch
      |  a queue per worker         (rows [w*B/W, (w+1)*B/W) always go to worker w), so
      v                             each worker's StreamingFilter carries its own rows
    writers (threads of a worker)   persist accepted pairs to the buffer of the weights'
                                    source: expert -> expert, best -> self_play

Workers are forked processes by default (``stages="processes"``): the producer's rollout
is many small torch ops whose Python dispatch holds the GIL, so worker *threads* barely
overlap with it (measured: 1.12x serial throughput, against 1.35x for processes). Chunks
reach a worker through shared-memory slots allocated before the fork (``_SlotRing``); a
worker hands a slot back as soon as its filter has copied what it keeps.

``mode="serial"`` does the same work in one thread, chunk by chunk (the baseline of
``benchmarks/selfplay_pipeline.py``); ``mode="all_at_once"`` computes every tick of a
rollout first and filters afterwards (the schedule A/B: same pairs, much more memory).
All modes see the same weights, items and noise for a given seed, so they accept the
same pairs.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch

from thinkgym.ctm_core.selfplay.filters import Chunk, FilterRule, StreamingFilter, accept_pairs
from thinkgym.ctm_core.selfplay.storage import DataId, PairBatch, decays_of
from thinkgym.ctm_core.state import TENSOR_FIELDS, StatePack
from thinkgym.errors import ConfigError, check_int_fields

if TYPE_CHECKING:
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
    from thinkgym.ctm_core.selfplay.onm import OpticNerveModel
    from thinkgym.ctm_core.selfplay.weights import WeightManager

__all__ = [
    "DataGenerator",
    "GenerationReport",
    "GeneratorConfig",
    "RolloutSpec",
    "buffer_for_source",
]

logger = logging.getLogger(__name__)

Mode = Literal["pipeline", "serial", "all_at_once"]
_MODES: tuple[str, ...] = get_args(Mode)
_DONE = None  # queue sentinel


@dataclass(frozen=True)
class GeneratorConfig:
    """What one ``DataGenerator.run`` call generates, and how."""

    batches: int = 4
    """Rollout batches to run (weights are picked afresh for every batch)."""
    batch_size: int = 64
    """Items per rollout batch."""
    ticks: int = 250
    """Ticks per rollout (long: beyond the trained horizon is where thinking drifts)."""
    chunk_ticks: int = 10
    """Ticks per chunk handed from the producer to the filters."""
    rule: FilterRule = "strict"
    """``strict`` (improves at t+1 and t+2) or ``loose`` (t+2 vs t); see filters.py."""
    p_best: float = 0.5
    """Probability that a batch uses the best weights (else a random expert)."""
    split: str = "train"
    """Task split the items come from."""
    start_index: int = 0
    """First item index; batch k uses items ``start_index + k*batch_size + i``."""
    weight_noise: float = 0.0
    """Relative std of Gaussian noise on the weights (0: none); part of the weight id."""
    activation_noise: float = 0.0
    """Std of Gaussian noise added to the start state's ``z`` and ``A`` (0: none)."""
    mode: Mode = "pipeline"
    """``pipeline`` (threads), ``serial`` (one thread) or ``all_at_once`` (no chunks)."""
    stages: Literal["processes", "threads"] = "processes"
    """Pipeline mode: filter workers (each with its writer threads) run as forked processes,
    or as threads of this process. Processes overlap with the producer; threads share its
    GIL, and the producer's many small torch ops hold it most of the time."""
    filter_workers: int = 1
    """Filter workers in pipeline mode (a chunk is split along the batch among them). One
    per core left after the producer: on 2 cores, 1 (measured: 2 processes ran slower)."""
    writers: int = 1
    """Writer threads in pipeline mode."""
    queue_size: int = 2
    """Capacity of every queue, in chunks (back-pressure bound)."""
    seed: int = 0
    """Seeds weight picks and noise; batch k draws from ``default_rng([seed, k])``."""

    def __post_init__(self) -> None:
        check_int_fields(self, {**dict.fromkeys(("batches", "batch_size", "ticks",
                                                 "chunk_ticks", "filter_workers", "writers",
                                                 "queue_size"), 1),
                                **dict.fromkeys(("start_index", "seed"), 0)})
        accept_pairs(torch.zeros(1, 3), torch.zeros(1, 3), self.rule)
        if self.stages not in ("processes", "threads"):
            raise ConfigError("stages must be 'processes' or 'threads'", field="stages",
                              got=self.stages, fix="pass stages='processes'")
        if self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {list(_MODES)}", field="mode",
                              got=self.mode, fix="pass mode='pipeline'")
        if not 0.0 <= self.p_best <= 1.0:
            raise ConfigError("must be a probability in [0, 1]", field="p_best",
                              got=self.p_best, fix="pass p_best=0.5")
        for name in ("weight_noise", "activation_noise"):
            if getattr(self, name) < 0:
                raise ConfigError("must be >= 0", field=name, got=getattr(self, name),
                                  fix=f"pass {name}=0.0 (off) or a small std such as 0.01")
        if self.split not in ("train", "test"):
            raise ConfigError("unknown split", field="split", got=self.split,
                              fix="pass split='train' (self-play never reads test items)")


@dataclass
class GenerationReport:
    """What a run did (counts are exact)."""

    mode: str
    rule: str
    rollouts: int = 0
    ticks: int = 0
    pairs_evaluated: int = 0
    """Candidate pairs (t, t+2) compared by the filters."""
    pairs_accepted: int = 0
    """Pairs the filter kept (= handed to the writers)."""
    pairs_written: int = 0
    """Pairs the buffer confirmed written."""
    written_by_buffer: dict[str, int] = field(default_factory=dict)
    rollouts_by_source: dict[str, int] = field(default_factory=dict)
    accepted_by_tick: list[int] = field(default_factory=list)
    """accepted_by_tick[t]: accepted pairs whose State_t is at tick t."""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Serial modes only: seconds spent producing chunks, filtering, writing."""

    @property
    def yield_rate(self) -> float:
        """Accepted / evaluated pairs."""
        return self.pairs_accepted / self.pairs_evaluated if self.pairs_evaluated else 0.0

    @property
    def pairs_evaluated_per_s(self) -> float:
        return self.pairs_evaluated / self.seconds if self.seconds else 0.0

    @property
    def pairs_written_per_s(self) -> float:
        return self.pairs_written / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "yield": self.yield_rate,
                "pairs_evaluated_per_s": self.pairs_evaluated_per_s,
                "pairs_written_per_s": self.pairs_written_per_s}


@dataclass(frozen=True)
class RolloutSpec:
    """One rollout batch: which weights, which items."""

    rollout: int
    weight_id: str
    source: str
    data_ids: list[DataId]


def buffer_for_source(source: str) -> str:
    """The replay sub-buffer for pairs made by weights from ``source``."""
    return "self_play" if source == "best" else "expert"


class DataGenerator:
    """Run rollouts with managed weights, filter them, write accepted pairs.

    Args:
        weights: where weights are picked and resolved (``WeightManager``).
        buffer: where accepted pairs go (``DiskReplayBuffer``).
        onm: optional Optic Nerve Model proposing start states (None: the learned start).
    """

    def __init__(self, weights: WeightManager, buffer: DiskReplayBuffer,
                 onm: OpticNerveModel | None = None) -> None:
        self.weights = weights
        self.buffer = buffer
        self.onm = onm

    # ------------------------------------------------------------------ stage 1: producer
    def specs(self, cfg: GeneratorConfig) -> Iterator[RolloutSpec]:
        """The rollout batches of ``cfg`` (deterministic given ``cfg.seed``)."""
        from thinkgym.ctm_core.selfplay.weights import noisy_id

        _, task = self.weights.resolve(self.weights.best_id)
        task_config = task.config.to_dict()
        for k in range(cfg.batches):
            rng = np.random.default_rng([cfg.seed, k])
            pick = self.weights.pick(rng, cfg.p_best)
            weight_id = pick.weight_id
            if cfg.weight_noise > 0:
                weight_id = noisy_id(weight_id, cfg.weight_noise, int(rng.integers(2**31)))
            first = cfg.start_index + k * cfg.batch_size
            data_ids = [DataId(task.name, task_config, cfg.split, first + i)
                        for i in range(cfg.batch_size)]
            yield RolloutSpec(k, weight_id, pick.source, data_ids)

    def chunks(self, spec: RolloutSpec, cfg: GeneratorConfig,
               chunk_ticks: int | None = None) -> Iterator[Chunk]:
        """Roll ``spec`` out for ``cfg.ticks`` ticks and yield it in chunks (no grad).

        The first chunk also holds the start state (tick ``start``), so ``ticks + 1``
        states are yielded in total. ``chunk_ticks=cfg.ticks`` gives a single chunk.
        """
        from thinkgym.ctm_core.selfplay.onm import generate_initial_state
        from thinkgym.ctm_core.selfplay.storage import regenerate

        model, task = self.weights.resolve(spec.weight_id)
        items = regenerate(spec.data_ids)
        step = chunk_ticks or cfg.chunk_ticks
        decays = decays_of(model)
        with torch.no_grad():
            kv = model.compute_kv(items.inputs)
            state = generate_initial_state(model, kv, self.onm)
            if cfg.activation_noise > 0:
                state = _perturb(state, cfg.activation_noise, [cfg.seed, spec.rollout, 1])
            logits, certainty = model.readout(state)
            pending: tuple[list[StatePack], torch.Tensor, torch.Tensor] | None = (
                [state], logits.unsqueeze(-1), certainty.unsqueeze(-1))
            first, done = state.tick, 0
            while done < cfg.ticks:
                n = min(step, cfg.ticks - done)
                out = model.rollout_from(state, kv, n, return_states=True)
                assert out.states is not None
                states, logits, certainty = out.states, out.logits, out.certainty
                if pending is not None:  # the start state rides with the first chunk
                    states = pending[0] + states
                    logits = torch.cat((pending[1], logits), dim=-1)
                    certainty = torch.cat((pending[2], certainty), dim=-1)
                    pending = None
                done += n
                state = out.final_state
                losses = task.per_tick_loss(logits, items.targets)
                stacked = {k: torch.stack([getattr(s, k) for s in states], dim=1)
                           for k in TENSOR_FIELDS}
                yield Chunk(spec.rollout, first, stacked, losses, certainty, spec.weight_id,
                            spec.source, spec.data_ids, last=done >= cfg.ticks,
                            decays=decays)
                first += len(states)

    # ------------------------------------------------------------------ running
    def run(self, cfg: GeneratorConfig, progress: Callable[[GenerationReport], None] | None = None
            ) -> GenerationReport:
        """Generate ``cfg.batches`` rollout batches in ``cfg.mode``; the exact counts."""
        report = GenerationReport(mode=cfg.mode, rule=cfg.rule)
        started = time.perf_counter()
        if cfg.mode == "pipeline" and cfg.stages == "processes":
            _run_processes(self, cfg, report, progress)
        elif cfg.mode == "pipeline":
            _Pipeline(self, cfg, report).run(progress)
        else:
            chunk_ticks = cfg.ticks if cfg.mode == "all_at_once" else cfg.chunk_ticks
            filt, lock = StreamingFilter(cfg.rule), threading.Lock()
            ticks: Counter[int] = Counter()
            for spec in self.specs(cfg):
                self._count_rollout(report, spec)
                clock = time.perf_counter()
                for chunk in self.chunks(spec, cfg, chunk_ticks):
                    clock = _lap(report, "produce", clock)
                    pairs = filt.push(chunk)
                    clock = _lap(report, "filter", clock)
                    if pairs is not None:
                        ticks.update(pairs.tick.tolist())
                        self._write(pairs, chunk, report, lock)
                    clock = _lap(report, "write", clock)
                if progress is not None:
                    progress(report)
            report.pairs_evaluated, report.pairs_accepted = filt.evaluated, filt.accepted
            report.accepted_by_tick = _histogram(ticks)
        report.seconds = time.perf_counter() - started
        return report

    def _count_rollout(self, report: GenerationReport, spec: RolloutSpec) -> None:
        report.rollouts += 1
        report.rollouts_by_source[spec.source] = report.rollouts_by_source.get(spec.source, 0) + 1

    def _write(self, pairs: PairBatch, chunk: Chunk, report: GenerationReport,
               lock: threading.Lock) -> None:
        name = buffer_for_source(chunk.source)
        assert chunk.decays is not None
        written = self.buffer.save_pairs(pairs, name, {chunk.weight_id: chunk.decays})
        with lock:  # several writer threads share the report
            report.pairs_written += written
            report.written_by_buffer[name] = report.written_by_buffer.get(name, 0) + written


class _Pipeline:
    """The threads and bounded queues of one ``mode="pipeline"`` run."""

    def __init__(self, gen: DataGenerator, cfg: GeneratorConfig, report: GenerationReport,
                 inboxes: list[Any] | None = None) -> None:
        self.gen, self.cfg, self.report = gen, cfg, report
        self.inboxes: list[Any] = inboxes if inboxes is not None else [
            queue.Queue(cfg.queue_size) for _ in range(cfg.filter_workers)]
        self.pack: Callable[[int, Chunk], Any] = lambda w, chunk: chunk
        """How a chunk travels through inbox w (``_SlotRing.pack`` across processes)."""
        self.unpack: Callable[[Any], Chunk] = lambda item: item
        self.release: Callable[[Any], None] = lambda item: None
        """Called once the filter is done with an item (frees its shared-memory slot)."""
        self.watch: Callable[[], bool] = lambda: True
        """Called while blocked on a queue; False (a worker process died) stops the run."""
        self.outbox: queue.Queue[tuple[PairBatch, Chunk] | None] = queue.Queue(cfg.queue_size)
        self.filters = [StreamingFilter(cfg.rule) for _ in self.inboxes]
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.ticks: Counter[int] = Counter()

    def put(self, q: Any, item: Any) -> None:
        """Block while ``q`` is full (back-pressure), unless another stage failed."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.watch():
                    self.stop.set()

    def get(self, q: Any) -> Any:
        """The next item, or the sentinel once another stage failed."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _DONE

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # re-raised in the calling thread
            self.errors.append(exc)
            self.stop.set()

    def filter_loop(self, w: int) -> None:
        while (item := self.get(self.inboxes[w])) is not _DONE:
            chunk = self.unpack(item)
            pairs = self.filters[w].push(chunk)  # copies what it keeps: the item can go
            self.release(item)
            if pairs is not None:
                with self.lock:
                    self.ticks.update(pairs.tick.tolist())
                self.put(self.outbox, (pairs, chunk))

    def write_loop(self) -> None:
        while (item := self.get(self.outbox)) is not _DONE:
            self.gen._write(item[0], item[1], self.report, self.lock)

    def produce(self, progress: Callable[[GenerationReport], None] | None) -> None:
        workers = len(self.inboxes)
        for spec in self.gen.specs(self.cfg):
            self.gen._count_rollout(self.report, spec)
            bounds = np.linspace(0, len(spec.data_ids), workers + 1).round().astype(int)
            for chunk in self.gen.chunks(spec, self.cfg):
                for w in range(workers):
                    if bounds[w] < bounds[w + 1]:
                        part = chunk.rows(int(bounds[w]), int(bounds[w + 1]))
                        self.put(self.inboxes[w], self.pack(w, part))
                if self.stop.is_set():
                    return
            if progress is not None:
                progress(self.report)

    def start_consumers(self) -> tuple[list[threading.Thread], list[threading.Thread]]:
        """Filter threads (one per inbox) and writer threads, running."""
        def thread(name: str, fn: Callable[..., None], *args: Any) -> threading.Thread:
            t = threading.Thread(target=self._guarded, args=(fn, *args), name=name, daemon=True)
            t.start()
            return t

        return ([thread(f"selfplay-filter-{w}", self.filter_loop, w)
                 for w in range(len(self.inboxes))],
                [thread(f"selfplay-writer-{i}", self.write_loop) for i in range(self.cfg.writers)])

    def finish(self, filters: list[threading.Thread], writers: list[threading.Thread]) -> None:
        """Wait for the filters (their inboxes got the sentinel), then drain the writers."""
        for t in filters:
            t.join()
        for _ in writers:
            self.put(self.outbox, _DONE)
        for t in writers:
            t.join()
        if self.errors:
            raise self.errors[0]
        self.report.pairs_evaluated = sum(f.evaluated for f in self.filters)
        self.report.pairs_accepted = sum(f.accepted for f in self.filters)
        self.report.accepted_by_tick = _histogram(self.ticks)

    def run(self, progress: Callable[[GenerationReport], None] | None) -> None:
        """Threads: the producer here, filters and writers beside it."""
        filters, writers = self.start_consumers()
        try:
            self._guarded(self.produce, progress)
        finally:
            for q in self.inboxes:
                self.put(q, _DONE)
            self.finish(filters, writers)


class _SlotRing:
    """Shared-memory slots for one worker process, allocated before the fork.

    A chunk travels as (slot, shapes, metadata): the producer copies its tensors into a
    free slot and the worker reads them in place, then hands the slot back. (Sending the
    tensors themselves costs a new shared-memory segment and a file descriptor per tensor:
    at 10-tick chunks that made the process pipeline slower than the serial loop.)
    """

    def __init__(self, ctx: Any, slots: int, size: int) -> None:
        self.buffers = [torch.empty(size).share_memory_() for _ in range(slots)]
        self.free = ctx.Queue()
        for i in range(slots):
            self.free.put(i)

    def pack(self, pipe: _Pipeline, chunk: Chunk) -> tuple[int, list[tuple[int, ...]], Any]:
        assert chunk.decays is not None
        parts = [*(chunk.states[k] for k in TENSOR_FIELDS), chunk.losses, chunk.certainty,
                 *chunk.decays]
        slot = pipe.get(self.free)
        if slot is _DONE:  # another stage failed: nothing will read this
            return (-1, [], None)
        flat, at = self.buffers[slot], 0
        for t in parts:
            flat[at:at + t.numel()].view(t.shape).copy_(t)
            at += t.numel()
        meta = (chunk.rollout, chunk.first_tick, chunk.weight_id, chunk.source,
                chunk.data_ids, chunk.last)
        return slot, [tuple(t.shape) for t in parts], meta

    def unpack(self, item: tuple[int, list[tuple[int, ...]], Any]) -> Chunk:
        slot, shapes, (rollout, first_tick, weight_id, source, data_ids, last) = item
        views, at, flat = [], 0, self.buffers[slot]
        for shape in shapes:
            n = int(np.prod(shape))
            views.append(flat[at:at + n].view(shape))
            at += n
        states = dict(zip(TENSOR_FIELDS, views[:len(TENSOR_FIELDS)], strict=True))
        losses, certainty, r_action, r_out = views[len(TENSOR_FIELDS):]
        return Chunk(rollout, first_tick, states, losses, certainty, weight_id, source,
                     data_ids, last, (r_action.clone(), r_out.clone()))

    def release(self, item: tuple[int, Any, Any]) -> None:
        self.free.put(item[0])


def _slot_size(gen: DataGenerator, cfg: GeneratorConfig) -> int:
    """Floats in the largest chunk slice a worker can receive."""
    c = gen.weights.resolve(gen.weights.best_id)[0].config
    per_state = sum(math.prod(shape) for shape in c.state_shapes().values()) + 2  # + L, C
    rows = -(-cfg.batch_size // cfg.filter_workers) + 1
    return rows * (cfg.chunk_ticks + 1) * per_state + c.synch_size_action + c.synch_size_out


def _consume_in_process(inbox: Any, ring: _SlotRing, results: Any, root: str, capacity: int,
                        dtype: torch.dtype, cfg: GeneratorConfig) -> None:
    """A worker process: filter one row slice of every chunk, write what it accepts."""
    torch.set_num_threads(1)
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

    report = GenerationReport(mode=cfg.mode, rule=cfg.rule)
    try:
        gen = DataGenerator(None, DiskReplayBuffer(root, capacity=capacity, dtype=dtype))  # type: ignore[arg-type]
        pipe = _Pipeline(gen, cfg, report, inboxes=[inbox])
        pipe.unpack, pipe.release = ring.unpack, ring.release
        pipe.finish(*pipe.start_consumers())
        results.put(("ok", report.pairs_evaluated, report.pairs_accepted, report.pairs_written,
                     report.written_by_buffer, dict(pipe.ticks)))
    except BaseException as exc:  # reported to the parent, which re-raises it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _run_processes(gen: DataGenerator, cfg: GeneratorConfig, report: GenerationReport,
                   progress: Callable[[GenerationReport], None] | None) -> None:
    """Processes: the producer here, one forked worker process per filter worker."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("fork")
    inboxes = [ctx.Queue(cfg.queue_size) for _ in range(cfg.filter_workers)]
    size = _slot_size(gen, cfg)
    rings = [_SlotRing(ctx, cfg.queue_size + 2, size) for _ in inboxes]
    results = ctx.Queue()
    buf = gen.buffer
    procs = [ctx.Process(target=_consume_in_process, daemon=True,
                         args=(q, ring, results, str(buf.root), buf.capacity, buf.dtype, cfg))
             for q, ring in zip(inboxes, rings, strict=True)]
    for proc in procs:
        proc.start()
    pipe = _Pipeline(gen, cfg, report, inboxes=inboxes)
    pipe.pack = lambda w, chunk: rings[w].pack(pipe, chunk)
    pipe.watch = lambda: all(p.is_alive() for p in procs)
    outcomes: list[tuple[Any, ...]] = []
    try:
        pipe._guarded(pipe.produce, progress)
    finally:
        for q in inboxes:
            pipe.put(q, _DONE)
        while len(outcomes) < len(procs):
            try:
                outcomes.append(results.get(timeout=0.5))
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
        for proc in procs:
            proc.join(timeout=5)
    if pipe.errors:
        raise pipe.errors[0]
    failed = [o[1] for o in outcomes if o[0] == "error"]
    if failed or len(outcomes) < len(procs):
        raise RuntimeError(f"a self-play worker process failed: {failed or 'it died'}")
    ticks: Counter[int] = Counter()
    for _, evaluated, accepted, written, by_buffer, by_tick in outcomes:
        report.pairs_evaluated += evaluated
        report.pairs_accepted += accepted
        report.pairs_written += written
        for name, n in by_buffer.items():
            report.written_by_buffer[name] = report.written_by_buffer.get(name, 0) + n
        ticks.update(by_tick)
    report.accepted_by_tick = _histogram(ticks)


def _lap(report: GenerationReport, stage: str, since: float) -> float:
    now = time.perf_counter()
    report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + now - since
    return now


def _histogram(ticks: Counter[int]) -> list[int]:
    if not ticks:
        return []
    out = [0] * (max(ticks) + 1)
    for t, n in ticks.items():
        out[t] = n
    return out


def _perturb(state: StatePack, std: float, seed: list[int]) -> StatePack:
    """The state with Gaussian noise on ``z`` and ``A`` (synchronisation sums untouched)."""
    gen = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2**62)))
    tensors = state.tensors()
    for name in ("z", "A"):
        t = tensors[name]
        tensors[name] = t + std * torch.randn(t.shape, generator=gen, dtype=t.dtype)
    return StatePack.from_tensors(tensors, state.tick)

