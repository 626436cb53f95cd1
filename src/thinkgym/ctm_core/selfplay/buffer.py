"""``DiskReplayBuffer``: two FIFO sub-buffers of checksummed transition shards on disk.

Layout of ``root``::

    root/
      .lock                            flock'ed by writers: sequence numbers, eviction
      expert_replay_buffer/            buffer="expert": pairs made by expert weights
        shard-000000000041-000093.pt   seq 41, trimmed by eviction to its newest 93 pairs
        shard-000000000042-000128.pt   seq 42: one save_pairs call of 128 pairs
        .next_seq                      next sequence number (never reused, even by clear)
        .tmp-<pid>-<hex>               a write in progress; readers ignore it
        shard-...pt.corrupt            a shard that failed its check, kept for inspection
      self_play_replay_buffer/         buffer="self_play": pairs made by the best weights

**Shards.** One ``save_pairs`` call writes one shard: ``torch.save`` of
``storage.encode(batch, decays, dtype)`` (stacked tensors) behind a 48-byte header
``MAGIC (8) | payload length (8, little-endian) | sha256(payload) (32)``. The name holds
the sequence number and the pair count, so :meth:`DiskReplayBuffer.count` lists the
directory and opens nothing.

**Atomicity.** A shard is written to a ``.tmp-`` file in its directory, flushed, fsynced
and ``os.replace``-d to its name: a writer killed at any moment leaves nothing or a temp
file (removed at open once older than ``STALE_TEMP_SECONDS``), never a partial shard
under a shard name (the directory is not fsynced: a power cut may lose the newest shard,
not tear it). A reader checks magic, length and sha256, decodes, and compares the
row count with the name; a shard failing any check is skipped, logged, counted in
``stats().corrupt_shards`` and renamed to ``*.corrupt``.

**Eviction (FIFO).** After its shard lands, a writer drops the sub-buffer's oldest pairs
until at most ``capacity`` remain: whole shards are deleted, and the last one is trimmed
by writing its newest pairs as a shard with the *same* sequence number and a *smaller*
count (atomically, as above), then deleting the old file. Both names may be seen in
between (or after a crash there): readers take the smallest count of each sequence
number, so no pair is counted twice; the next writer, or the next open, deletes the rest.

**Concurrency.** Sequence numbers are allocated, shards renamed into place and evicted
under a thread lock plus ``fcntl.flock`` on ``root/.lock`` (opened per use, so forked
processes and several instances exclude each other too); encoding and the temp write
happen outside it. All writers of a root should use one ``capacity``. Readers take no
lock: a shard that vanishes between listing and opening makes ``load_batch`` list again
and redraw.

    >>> import tempfile, torch
    >>> from thinkgym.ctm_core.selfplay.storage import DataId, PairBatch, beta_for_ticks
    >>> r = (torch.full((2,), 0.5), torch.full((2,), 0.5))
    >>> tick = torch.tensor([3, 5])
    >>> def state(t):
    ...     s = {k: torch.randn(2, 4) for k in ("z", "o")}
    ...     s["A"] = torch.randn(2, 4, 3)
    ...     s["alpha_action"], s["alpha_out"] = torch.randn(2, 2), torch.randn(2, 2)
    ...     s["beta_action"] = s["beta_out"] = beta_for_ticks(r[0], t)
    ...     return s
    >>> items = [DataId("parity", {"length": 4}, "train", i) for i in (7, 8)]
    >>> batch = PairBatch(state(tick), state(tick + 2), tick, torch.zeros(2, 3),
    ...                   torch.zeros(2, 3), ["w", "w"], items)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> buf = DiskReplayBuffer(tmp.name, capacity=3)
    >>> buf.save_pairs(batch, "expert", {"w": r}), buf.save_pairs(batch, "expert", {"w": r})
    (2, 2)
    >>> buf.counts()                    # FIFO: the oldest pair (item 7 of the first call) went
    {'expert': 3, 'self_play': 0}
    >>> sorted(d.index for d in buf.load_batch(3, "expert").data_ids)
    [7, 8, 8]
    >>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from thinkgym.ctm_core.selfplay.storage import DataId, Decays, PairBatch, decode, encode
from thinkgym.ctm_core.state import StatePack
from thinkgym.errors import ConfigError, ThinkgymError

__all__ = ["BUFFERS", "MAGIC", "STALE_TEMP_SECONDS", "BufferStats", "DiskReplayBuffer",
           "EmptyBufferError"]

logger = logging.getLogger(__name__)

BUFFERS: tuple[str, ...] = ("expert", "self_play")
"""Sub-buffer names: pairs from expert weights, pairs from the best weights."""
_DIRS = {"expert": "expert_replay_buffer", "self_play": "self_play_replay_buffer"}
MAGIC = b"TGPAIRS1"
_HEADER = len(MAGIC) + 8 + 32
_SHARD = re.compile(r"^shard-(\d{12,})-(\d{6,})\.pt$")
_TEMP = ".tmp-"
_NEXT_SEQ = ".next_seq"
STALE_TEMP_SECONDS = 600.0
"""Temp files older than this are debris of a killed writer: removed at open."""
_READ_ATTEMPTS = 8
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class EmptyBufferError(ThinkgymError, LookupError):
    """``load_batch`` on a buffer that holds no readable pair."""


@dataclass(frozen=True)
class BufferStats:
    """A snapshot of one root (each field per sub-buffer unless said otherwise)."""

    counts: dict[str, int]
    """Pairs, as :meth:`DiskReplayBuffer.count`."""
    shards: dict[str, int]
    """Shard files (one per live sequence number)."""
    disk_bytes: dict[str, int]
    """Bytes of those shard files on disk."""
    quarantined: dict[str, int]
    """``*.corrupt`` files (found by any process), kept until :meth:`~DiskReplayBuffer.clear`."""
    corrupt_shards: int
    """Shards this instance found corrupt (failed checksum or decode) since it was opened."""


class _Shard(NamedTuple):
    buffer: str
    seq: int
    pairs: int
    name: str


def _shard_name(seq: int, count: int) -> str:
    return f"shard-{seq:012d}-{count:06d}.pt"


def _pack(record: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    torch.save(dict(record), out)
    payload = out.getvalue()
    return MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest() + payload


def _unpack(data: bytes) -> dict[str, Any]:
    """The record in ``data``; ``ValueError`` when its header, length or checksum is wrong."""
    if len(data) < _HEADER or data[:len(MAGIC)] != MAGIC:
        raise ValueError(f"no {MAGIC!r} header ({len(data)} bytes)")
    length = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    payload = data[_HEADER:]
    if len(payload) != length:
        raise ValueError(f"payload is {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != data[_HEADER - 32:_HEADER]:
        raise ValueError("sha256 mismatch")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _write_temp(folder: Path, data: bytes) -> Path:
    """``data`` in a fresh, fsynced temp file of ``folder`` (same filesystem: rename is atomic)."""
    temp = folder / f"{_TEMP}{os.getpid()}-{uuid.uuid4().hex}"
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return temp


def _is_stale(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return entry.name.startswith(_TEMP) and entry.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False  # renamed into place by its (live) writer meanwhile


def _check_int(field: str, value: Any, lo: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ConfigError(f"must be an int >= {lo}", field=field, got=value, fix=fix)


def _row(values: Sequence[float] | torch.Tensor, field: str) -> torch.Tensor:
    row = torch.as_tensor(values, dtype=torch.float32).detach().cpu()
    if row.numel() != 3:
        raise ConfigError("needs 3 values: at t, t+1, t+2", field=field,
                          got=tuple(row.shape), fix=f"pass {field}=[at_t, at_t1, at_t2]")
    return row.reshape(1, 3)


def _on_cpu(batch: PairBatch) -> PairBatch:
    """Detached CPU tensors (no copy when they already are): what ``torch.save`` should see."""
    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu()

    return PairBatch({k: cpu(v) for k, v in batch.state_t.items()},
                     {k: cpu(v) for k, v in batch.state_t2.items()}, cpu(batch.tick),
                     cpu(batch.losses), cpu(batch.certainties), list(batch.weight_ids),
                     list(batch.data_ids))


class DiskReplayBuffer:
    """Two FIFO sub-buffers (``"expert"``, ``"self_play"``) of transitions under ``root``.

    Args:
        root: directory of the buffer (created if missing); see the module docstring.
        capacity: pairs kept per sub-buffer; a write that goes over drops the oldest.
        dtype: storage dtype of the state tensors (``float16`` halves the bytes).
        cache_shards: decoded shards kept in memory (LRU) for ``load_batch``; 0 disables.
    """

    def __init__(self, root: str | os.PathLike[str], capacity: int = 100_000,
                 dtype: torch.dtype = torch.float16, *, cache_shards: int = 8) -> None:
        _check_int("capacity", capacity, 1, "pass capacity=100_000 (pairs per sub-buffer)")
        _check_int("cache_shards", cache_shards, 0, "pass cache_shards=8 (0 disables it)")
        if dtype not in _DTYPES:
            raise ConfigError("storage dtype must be float16, bfloat16 or float32",
                              field="dtype", got=str(dtype), fix="pass dtype=torch.float16")
        self.root = Path(root)
        self.capacity = int(capacity)
        self.dtype = dtype
        self.cache_shards = int(cache_shards)
        for name in BUFFERS:
            self._dir(name).mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()  # guards the cache and the corrupt set
        self._cache: OrderedDict[tuple[str, str], PairBatch] = OrderedDict()
        self._corrupt: set[tuple[str, str]] = set()
        self._remove_stale_temps()
        with self._locked():
            for name in BUFFERS:
                self._scan(name, prune=True)  # a writer killed mid-trim leaves two names

    def __repr__(self) -> str:
        return (f"DiskReplayBuffer({str(self.root)!r}, capacity={self.capacity}, "
                f"dtype={self.dtype}, counts={self.counts()})")

    # ------------------------------------------------------------------ writing
    def save_pairs(self, batch: PairBatch, buffer: str, decays: Mapping[str, Decays]) -> int:
        """Append ``batch`` to ``buffer`` as one shard; returns ``len(batch)``.

        ``decays`` maps each weight id of the batch to its ``storage.decays_of``. An empty
        batch writes nothing. A batch larger than ``capacity`` writes only its newest
        ``capacity`` rows (FIFO would evict the others at once).
        """
        self._check_buffer(buffer)
        n = len(batch)
        if n == 0:
            return 0
        if n > self.capacity:
            batch = batch.index(torch.arange(n - self.capacity, n))
        folder = self._dir(buffer)
        temp = _write_temp(folder, _pack(encode(_on_cpu(batch), decays, self.dtype)))
        try:
            with self._locked():
                seq = self._next_seq(buffer)
                os.replace(temp, folder / _shard_name(seq, len(batch)))
                self._evict(buffer)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()  # only still there if the rename did not happen
        return n

    def save_pair(self, state_t: StatePack, state_t2: StatePack, *, tick: int,
                  losses: Sequence[float] | torch.Tensor,
                  certainties: Sequence[float] | torch.Tensor, weight_id: str,
                  data_id: DataId, buffer: str, decays: Mapping[str, Decays]) -> None:
        """Append one transition (``state_t``/``state_t2`` of batch size 1) to ``buffer``.

        ``losses`` and ``certainties`` hold the values at t, t+1, t+2.
        """
        for field, state in (("state_t", state_t), ("state_t2", state_t2)):
            if state.batch_size != 1:
                raise ConfigError("save_pair takes states of batch size 1", field=field,
                                  got=state.batch_size,
                                  fix="pick a row with state.index(i), or use save_pairs")
        batch = PairBatch(state_t.tensors(), state_t2.tensors(), torch.tensor([int(tick)]),
                          _row(losses, "losses"), _row(certainties, "certainties"),
                          [weight_id], [data_id])
        self.save_pairs(batch, buffer, decays)

    def clear(self, buffer: str | None = None) -> None:
        """Delete every shard (and ``*.corrupt`` file) of ``buffer``, or of both when None."""
        names = self._select(buffer)
        with self._locked():
            for name in names:
                with os.scandir(self._dir(name)) as entries:
                    doomed = [e.name for e in entries
                              if _SHARD.match(e.name) or e.name.endswith(".corrupt")]
                for file in doomed:
                    self._unlink(name, file)

    # ------------------------------------------------------------------ reading
    def load_batch(self, n: int, buffer: str | None = None,
                   rng: np.random.Generator | int | None = None) -> PairBatch:
        """``n`` pairs drawn uniformly from ``buffer`` (both pooled when None), in draw order.

        Without replacement when ``n`` <= the pairs available (a full read returns every
        pair once), with replacement otherwise (so training can start on a small buffer).
        Only the shards holding drawn pairs are read. ``rng``: a ``numpy.random.Generator``
        (or a seed; None draws fresh entropy).
        """
        _check_int("n", n, 1, "pass n >= 1 (the batch size)")
        names = self._select(buffer)
        rng = np.random.default_rng(rng)  # a Generator passes through unchanged
        for _ in range(_READ_ATTEMPTS):
            shards = [s for name in names for s in self._scan(name)]
            counts = np.array([s.pairs for s in shards], dtype=np.int64)
            if not counts.sum():
                label = buffer or "+".join(BUFFERS)
                raise EmptyBufferError(
                    f"replay buffer {label!r} holds no readable pairs", got=str(self.root),
                    fix="save_pairs(..., buffer=...) first, or sample another buffer "
                        "(buffer=None pools both)")
            batch = self._draw(shards, counts, int(n), rng)
            if batch is not None:
                return batch
        raise ThinkgymError("replay shards kept vanishing while being read",
                            got=_READ_ATTEMPTS,
                            fix="retry; check that no other process deletes shards by hand")

    def count(self, buffer: str | None = None) -> int:
        """Pairs in ``buffer`` (both when None), from the file names alone."""
        return sum(s.pairs for name in self._select(buffer) for s in self._scan(name))

    def counts(self) -> dict[str, int]:
        """``{buffer: count}`` for every sub-buffer."""
        return {name: self.count(name) for name in BUFFERS}

    def stats(self) -> BufferStats:
        """Counts, shard files, bytes on disk and corrupt shards (see ``BufferStats``)."""
        counts: dict[str, int] = {}
        shards: dict[str, int] = {}
        sizes: dict[str, int] = {}
        quarantined: dict[str, int] = {}
        for name in BUFFERS:
            live = self._scan(name)
            counts[name], shards[name] = sum(s.pairs for s in live), len(live)
            sizes[name] = 0
            for s in live:
                with contextlib.suppress(FileNotFoundError):
                    sizes[name] += (self._dir(name) / s.name).stat().st_size
            with os.scandir(self._dir(name)) as entries:
                quarantined[name] = sum(e.name.endswith(".corrupt") for e in entries)
        with self._state_lock:
            corrupt = len(self._corrupt)
        return BufferStats(counts, shards, sizes, quarantined, corrupt)

    # ------------------------------------------------------------------ internals
    def _dir(self, buffer: str) -> Path:
        return self.root / _DIRS[buffer]

    def _check_buffer(self, buffer: Any) -> None:
        if buffer not in BUFFERS:
            raise ConfigError("unknown replay buffer", field="buffer", got=buffer,
                              fix=f"pass one of {BUFFERS}")

    def _select(self, buffer: str | None) -> tuple[str, ...]:
        if buffer is None:
            return BUFFERS
        self._check_buffer(buffer)
        return (buffer,)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._write_lock:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _scan(self, buffer: str, *, prune: bool = False) -> list[_Shard]:
        """Live shards, oldest first: per sequence number the smallest count (the latest trim).

        ``prune`` (lock held) deletes the superseded larger-count files.
        """
        versions: dict[int, list[_Shard]] = {}
        with os.scandir(self._dir(buffer)) as entries:
            for entry in entries:
                m = _SHARD.match(entry.name)
                if m and (buffer, entry.name) not in self._corrupt:
                    shard = _Shard(buffer, int(m[1]), int(m[2]), entry.name)
                    versions.setdefault(shard.seq, []).append(shard)
        live = []
        for seq in sorted(versions):
            first, *superseded = sorted(versions[seq], key=lambda s: s.pairs)
            live.append(first)
            for old in superseded if prune else ():
                logger.info("removing %s/%s: superseded by trimmed %s", buffer, old.name,
                            first.name)
                self._unlink(buffer, old.name)
        return live

    def _next_seq(self, buffer: str) -> int:
        """Allocate a sequence number (lock held); the listing covers a lost counter file."""
        path = self._dir(buffer) / _NEXT_SEQ
        try:
            stored = int(path.read_text())
        except (FileNotFoundError, ValueError):
            stored = 0
        live = self._scan(buffer)
        seq = max(stored, live[-1].seq + 1 if live else 0)
        os.replace(_write_temp(path.parent, str(seq + 1).encode()), path)
        return seq

    def _evict(self, buffer: str) -> None:
        """Drop the oldest pairs until ``capacity`` remain (lock held)."""
        live = self._scan(buffer, prune=True)
        excess = sum(s.pairs for s in live) - self.capacity
        for shard in live:
            if excess <= 0:
                return
            if shard.pairs <= excess:
                self._unlink(buffer, shard.name)
                excess -= shard.pairs
            else:
                excess -= self._trim(shard, excess)

    def _trim(self, shard: _Shard, drop: int) -> int:
        """Rewrite ``shard`` without its first ``drop`` pairs; returns the pairs removed."""
        try:
            record, batch = self._read(shard)
        except FileNotFoundError:
            return shard.pairs  # a reader quarantined it meanwhile
        except Exception as err:  # any failure to verify or decode: it holds no good pairs
            self._quarantine(shard, err)
            return shard.pairs
        decays = {w: (d["action"], d["out"]) for w, d in record["decays"].items()}
        dtype = getattr(torch, str(record["dtype"]))
        kept = batch.index(torch.arange(drop, shard.pairs))
        folder = self._dir(shard.buffer)
        temp = _write_temp(folder, _pack(encode(kept, decays, dtype)))
        os.replace(temp, folder / _shard_name(shard.seq, len(kept)))
        self._unlink(shard.buffer, shard.name)
        return drop

    def _unlink(self, buffer: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._dir(buffer) / name).unlink()
        with self._state_lock:
            self._cache.pop((buffer, name), None)

    def _read(self, shard: _Shard) -> tuple[dict[str, Any], PairBatch]:
        record = _unpack((self._dir(shard.buffer) / shard.name).read_bytes())
        batch = decode(record)
        if len(batch) != shard.pairs:
            raise ValueError(f"holds {len(batch)} pairs, its name says {shard.pairs}")
        return record, batch

    def _get(self, shard: _Shard) -> PairBatch | None:
        """The decoded shard (LRU-cached), or None when it vanished or is corrupt."""
        key = (shard.buffer, shard.name)
        with self._state_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            batch = self._read(shard)[1]
        except FileNotFoundError:
            return None  # evicted or trimmed since the listing
        except Exception as err:  # a reader must never return a corrupt pair
            self._quarantine(shard, err)
            return None
        with self._state_lock:
            self._cache[key] = batch
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        return batch

    def _quarantine(self, shard: _Shard, err: Exception) -> None:
        logger.warning("skipping corrupt replay shard %s/%s (%s: %s); renamed to *.corrupt",
                       _DIRS[shard.buffer], shard.name, type(err).__name__, err)
        with self._state_lock:
            self._corrupt.add((shard.buffer, shard.name))
        path = self._dir(shard.buffer) / shard.name
        with contextlib.suppress(OSError):  # another reader may have moved it already
            os.replace(path, path.with_name(path.name + ".corrupt"))

    def _draw(self, shards: list[_Shard], counts: np.ndarray, n: int,
              rng: np.random.Generator) -> PairBatch | None:
        """``n`` uniform draws over the listed pairs; None when a shard could not be read."""
        total = int(counts.sum())
        if n > total:
            logger.debug("drawing %d pairs from %d: with replacement", n, total)
        idx = rng.choice(total, size=n, replace=n > total)
        ends = np.cumsum(counts)
        which = np.searchsorted(ends, idx, side="right")  # shard of each draw
        rows = idx - (ends - counts)[which]
        parts, order = [], []
        for k in np.unique(which):
            batch = self._get(shards[k])
            if batch is None:
                return None
            at = np.flatnonzero(which == k)
            parts.append(batch.index(torch.from_numpy(rows[at])))
            order.append(at)
        joined = PairBatch.cat(parts)
        return joined.index(torch.from_numpy(np.argsort(np.concatenate(order))))

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for name in BUFFERS:
            with os.scandir(self._dir(name)) as entries:
                stale = [e.path for e in entries if _is_stale(e, cutoff)]
            for path in stale:
                logger.info("removing %s: left by a writer killed mid-write", path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
