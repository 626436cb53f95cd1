"""DiskReplayBuffer: round trips, exact FIFO counts, crash safety, concurrent writers."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from thinkgym.ctm_core.selfplay import buffer as buffer_module
from thinkgym.ctm_core.selfplay.buffer import BUFFERS, DiskReplayBuffer, EmptyBufferError
from thinkgym.ctm_core.selfplay.storage import DataId, PairBatch, beta_for_ticks
from thinkgym.ctm_core.state import TENSOR_FIELDS, StatePack
from thinkgym.errors import ConfigError

D, M, SA, SO, D_IN = 16, 5, 6, 4, 8  # d_model, memory length, synch sizes, d_input


def _decays(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.69 * torch.rand(SA, generator=g), 0.3 + 0.69 * torch.rand(SO, generator=g)


DECAYS = {"w-best": _decays(1), "w-expert": _decays(2)}


_WIDTHS = {"z": (D,), "alpha_action": (SA,), "alpha_out": (SO,), "o": (D_IN,), "A": (D, M)}
_ROW = sum(int(np.prod(w)) for w in _WIDTHS.values())


def make_batch(indices: range | list[int]) -> PairBatch:
    """Rows whose every value is a function of the item index (so any row can be rebuilt).

    Realistic structure: beta follows the decays of the row's weights and its tick, and
    State_{t+2}'s history window A shares M - 2 columns with State_t's.
    """
    idx = list(indices)
    noise = torch.stack([torch.randn(2 * _ROW, generator=torch.Generator().manual_seed(i))
                         for i in idx]) if idx else torch.empty(0, 2 * _ROW)
    tick = torch.tensor([_tick(i) for i in idx], dtype=torch.long)
    states = []
    for part, ticks in ((noise[:, :_ROW], tick), (noise[:, _ROW:], tick + 2)):
        chunks = part.split([int(np.prod(w)) for w in _WIDTHS.values()], dim=1)
        state = {k: c.reshape(len(idx), *w) for (k, w), c in zip(_WIDTHS.items(), chunks,
                                                                   strict=True)}
        for name, which in (("beta_action", 0), ("beta_out", 1)):
            state[name] = torch.zeros(len(idx), DECAYS["w-best"][which].shape[0])
            for w, decays in DECAYS.items():
                rows = torch.tensor([k for k, i in enumerate(idx) if _weight(i) == w],
                                    dtype=torch.long)
                state[name][rows] = beta_for_ticks(decays[which], ticks[rows])
        states.append(state)
    states[1]["A"] = torch.cat((states[0]["A"][..., 2:], states[1]["A"][..., :2]), -1)
    tag = torch.tensor(idx, dtype=torch.float32)
    return PairBatch(states[0], states[1], tick, torch.stack((tag, tag / 7, tag / 9), 1),
                     torch.stack((tag % 1.3, tag % 0.7, tag % 0.1), 1),
                     [_weight(i) for i in idx],
                     [DataId("parity", {"length": 8, "embed_dim": 4}, "test" if i % 3 == 0
                             else "train", i) for i in idx])


def _weight(i: int) -> str:
    return "w-expert" if i % 2 else "w-best"


def _tick(i: int) -> int:
    return (i * 7) % 23


def indices(batch: PairBatch) -> list[int]:
    return [d.index for d in batch.data_ids]


def assert_rows_match(got: PairBatch, exact: bool = True) -> None:
    """Every row of ``got`` equals the row ``make_batch`` builds for its index."""
    want = make_batch(indices(got))
    for name in TENSOR_FIELDS:
        for side, g, w in (("t", got.state_t, want.state_t), ("t2", got.state_t2, want.state_t2)):
            if exact or name.startswith("beta"):  # beta is recomputed in float32: exact
                assert torch.equal(g[name], w[name]), (side, name)
            else:  # float16 keeps ~11 significant bits
                torch.testing.assert_close(g[name], w[name], rtol=1e-3, atol=1e-3)
    assert torch.equal(got.tick, want.tick)
    assert torch.equal(got.losses, want.losses)
    assert torch.equal(got.certainties, want.certainties)
    assert got.weight_ids == want.weight_ids
    assert got.data_ids == want.data_ids


def read_all(buf: DiskReplayBuffer, buffer: str | None = None) -> PairBatch:
    """Every pair once: a draw of all available pairs is without replacement."""
    return buf.load_batch(buf.count(buffer), buffer, np.random.default_rng(0))


def shard_files(root: Path, buffer: str = "expert") -> list[str]:
    folder = root / f"{buffer}_replay_buffer"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("shard-"))


# ---------------------------------------------------------------- round trips
def test_round_trip_float32_is_exact(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path, dtype=torch.float32)
    assert buf.save_pairs(make_batch(range(0, 9)), "expert", DECAYS) == 9
    assert buf.save_pairs(make_batch(range(9, 14)), "expert", DECAYS) == 5
    got = read_all(buf, "expert")
    assert sorted(indices(got)) == list(range(14))
    assert set(got.weight_ids) == {"w-best", "w-expert"}
    assert {d.split for d in got.data_ids} == {"train", "test"}
    assert_rows_match(got, exact=True)


def test_round_trip_float16_within_tolerance_and_smaller(tmp_path: Path) -> None:
    half = DiskReplayBuffer(tmp_path / "half")
    full = DiskReplayBuffer(tmp_path / "full", dtype=torch.float32)
    for buf in (half, full):
        buf.save_pairs(make_batch(range(20)), "self_play", DECAYS)
    got = read_all(half, "self_play")
    assert sorted(indices(got)) == list(range(20))
    assert_rows_match(got, exact=False)
    assert half.stats().disk_bytes["self_play"] < 0.7 * full.stats().disk_bytes["self_play"]


def test_save_pair_stores_one_transition(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path, dtype=torch.float32)
    row = make_batch([5])
    before = StatePack.from_tensors(row.state_t, 0)
    after = StatePack.from_tensors(row.state_t2, 2)
    buf.save_pair(before, after, tick=_tick(5), losses=row.losses[0].tolist(),
                  certainties=row.certainties[0], weight_id="w-expert",
                  data_id=row.data_ids[0], buffer="self_play", decays=DECAYS)
    assert buf.counts() == {"expert": 0, "self_play": 1}
    assert_rows_match(buf.load_batch(1, "self_play"))
    two = StatePack.cat([before, before])
    with pytest.raises(ConfigError, match="batch size 1"):
        buf.save_pair(two, two, tick=0, losses=[0, 0, 0], certainties=[0, 0, 0],
                      weight_id="w-expert", data_id=row.data_ids[0], buffer="expert",
                      decays=DECAYS)


def test_empty_batch_writes_nothing(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path)
    assert buf.save_pairs(make_batch([]), "expert", DECAYS) == 0
    assert shard_files(tmp_path) == []
    assert buf.count() == 0


# ---------------------------------------------------------------- FIFO
def test_fifo_counts_are_exact_and_the_oldest_pairs_go(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path, capacity=10)
    written = 0
    for size in (4, 4, 4, 7, 1, 3):
        buf.save_pairs(make_batch(range(written, written + size)), "expert", DECAYS)
        written += size
        assert buf.count("expert") == min(written, 10)
        assert sorted(indices(read_all(buf, "expert"))) == list(range(max(0, written - 10),
                                                                        written))
        if written == 12:  # the first shard lost 2 of 4 pairs: same seq, smaller count
            assert shard_files(tmp_path)[0] == "shard-000000000000-000002.pt"
    assert all(f.split("-")[1] != "000000000000" for f in shard_files(tmp_path))


def test_batch_larger_than_capacity_keeps_its_newest_rows(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path, capacity=5)
    buf.save_pairs(make_batch(range(3)), "expert", DECAYS)
    assert buf.save_pairs(make_batch(range(100, 113)), "expert", DECAYS) == 13
    assert sorted(indices(read_all(buf, "expert"))) == list(range(108, 113))
    assert len(shard_files(tmp_path)) == 1


def test_reader_counts_a_half_finished_trim_once(tmp_path: Path) -> None:
    # A writer killed between writing the trimmed shard and deleting the original
    # leaves both names; the smaller count is the truth.
    buf = DiskReplayBuffer(tmp_path, capacity=6, dtype=torch.float32)
    buf.save_pairs(make_batch(range(4)), "expert", DECAYS)
    (original,) = shard_files(tmp_path)
    data = (tmp_path / "expert_replay_buffer" / original).read_bytes()
    buf.save_pairs(make_batch(range(4, 8)), "expert", DECAYS)
    (tmp_path / "expert_replay_buffer" / original).write_bytes(data)
    assert len(shard_files(tmp_path)) == 3
    assert buf.count() == 6
    got = read_all(buf)
    assert sorted(indices(got)) == list(range(2, 8))
    assert_rows_match(got)
    DiskReplayBuffer(tmp_path, capacity=6)  # opening prunes the superseded file
    assert original not in shard_files(tmp_path)
    assert len(shard_files(tmp_path)) == 2


# ---------------------------------------------------------------- corruption
def test_torn_and_garbage_shards_are_skipped_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = DiskReplayBuffer(tmp_path, dtype=torch.float32)
    for start in (0, 4, 8, 12):
        writer.save_pairs(make_batch(range(start, start + 4)), "expert", DECAYS)
    folder = tmp_path / "expert_replay_buffer"
    _, torn, flipped, last = (folder / name for name in shard_files(tmp_path))
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) // 2])  # a torn write
    flipped.write_bytes(_flip_a_tensor_byte(flipped.read_bytes()))  # still torch.load-able
    (folder / "shard-000000000090-000004.pt").write_bytes(os.urandom(len(data)))
    (folder / "shard-000000000091-000005.pt").write_bytes(last.read_bytes())  # name lies

    reader = DiskReplayBuffer(tmp_path)
    with caplog.at_level(logging.WARNING):
        got = reader.load_batch(25, "expert", np.random.default_rng(1))  # touches every shard
    good = [*range(4), *range(12, 16)]
    assert len(got) == 25
    assert set(indices(got)) <= set(good)
    assert_rows_match(got)
    stats = reader.stats()
    assert stats.corrupt_shards == 4
    assert stats.quarantined["expert"] == 4
    assert reader.count("expert") == len(good)
    assert sorted(indices(read_all(reader, "expert"))) == good
    assert sum("corrupt" in r.message for r in caplog.records) == 4


def _flip_a_tensor_byte(shard: bytes) -> bytes:
    """``shard`` with one bit flipped inside a tensor's bytes (not in the zip's metadata)."""
    header = 48  # magic, length, sha256
    payload = zipfile.ZipFile(io.BytesIO(shard[header:]))
    entry = next(i for i in payload.infolist() if "/data/" in i.filename and i.file_size > 8)
    local = header + entry.header_offset  # the local header's lengths, not the directory's
    name_len, extra_len = struct.unpack("<HH", shard[local + 26:local + 30])
    at = local + 30 + name_len + extra_len + 5
    out = bytearray(shard)
    out[at] ^= 0x40
    return bytes(out)


def test_only_corrupt_shards_means_empty(tmp_path: Path) -> None:
    folder = tmp_path / "self_play_replay_buffer"
    folder.mkdir(parents=True)
    (folder / "shard-000000000000-000003.pt").write_bytes(b"not a shard")
    buf = DiskReplayBuffer(tmp_path)
    with pytest.raises(EmptyBufferError, match="self_play"):
        buf.load_batch(2, "self_play")
    assert buf.stats().corrupt_shards == 1


def test_stale_temp_files_are_removed_at_open(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path)
    buf.save_pairs(make_batch(range(3)), "expert", DECAYS)
    folder = tmp_path / "expert_replay_buffer"
    old, fresh = folder / ".tmp-1-old", folder / ".tmp-1-fresh"
    old.write_bytes(b"half a shard")
    fresh.write_bytes(b"a write in progress")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    DiskReplayBuffer(tmp_path)
    assert not old.exists()
    assert fresh.exists()
    assert buf.count() == 3


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4])
def test_a_write_failing_midway_leaves_a_consistent_buffer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_write: int) -> None:
    # The k-th file the module opens for writing (shard, counter, trimmed shard, ...)
    # gets half its bytes, then the disk "fills": whatever is on disk then must read
    # back as either the state before the save or the state after it.
    buf = DiskReplayBuffer(tmp_path, capacity=10, dtype=torch.float32)
    buf.save_pairs(make_batch(range(4)), "expert", DECAYS)
    buf.save_pairs(make_batch(range(4, 8)), "expert", DECAYS)
    opened = 0

    class HalfFile(_SlowFile):
        def write(self, data: bytes) -> int:
            self._file.write(data[: len(data) // 2])
            self._file.flush()
            raise OSError(28, "No space left on device")

    def failing_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 (closed by the wrapper)
        opened += "w" in mode
        return HalfFile(file) if "w" in mode and opened == failing_write else file

    monkeypatch.setattr(buffer_module, "open", failing_open, raising=False)
    with contextlib.suppress(OSError):
        buf.save_pairs(make_batch(range(8, 12)), "expert", DECAYS)
    monkeypatch.undo()
    reader = DiskReplayBuffer(tmp_path, capacity=10)
    n = reader.count()
    got = read_all(reader)
    assert reader.stats().corrupt_shards == 0
    assert n in (8, 10, 12)  # not saved / saved and evicted / saved, eviction failed
    top = 8 if n == 8 else 12
    assert sorted(indices(got)) == list(range(top - n, top))
    assert_rows_match(got)


class _SlowFile:
    """A file whose ``write`` lands in flushed 8 KiB steps, 2 ms apart.

    On a page cache a whole shard is written in microseconds, so a kill would almost never
    land mid-write; slowed down, most kills do, and a non-atomic write shows up as a torn
    shard.
    """

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, data: bytes) -> int:
        for k in range(0, len(data), 8192):
            self._file.write(data[k:k + 8192])
            self._file.flush()
            time.sleep(0.002)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _SlowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _slow_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    file = open(path, mode, *args, **kwargs)  # noqa: SIM115 (wrapped, closed by _SlowFile)
    return _SlowFile(file) if "w" in mode else file


def writer_loop(root: str, start: str, capacity: str) -> None:
    """Run in a subprocess by the kill test: save batches of 50-99 pairs until killed."""
    buffer_module.open = _slow_open  # type: ignore[attr-defined]  # the module's file writes
    buf = DiskReplayBuffer(root, capacity=int(capacity), dtype=torch.float32)
    rng = np.random.default_rng(int(start))
    i = int(start)
    while True:
        sizes = rng.integers(50, 100, size=20)
        pool = make_batch(range(i, i + int(sizes.sum())))  # ahead: the loop is mostly I/O
        for size in sizes:
            buf.save_pairs(pool.index(torch.arange(size)), "self_play", DECAYS)
            pool = pool.index(torch.arange(size, len(pool)))
            i += int(size)
            print(i, flush=True)


def test_killed_writers_leave_only_complete_shards(tmp_path: Path) -> None:
    """Two writer processes SIGKILLed at random moments, three times over.

    Their file writes are slowed (``_SlowFile``) so most kills land mid-write.
    """
    capacity, rng = 400, np.random.default_rng(7)
    code = "import runpy, sys; runpy.run_path(sys.argv[1])['writer_loop'](*sys.argv[2:])"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for round_ in range(3):
        procs = [subprocess.Popen([sys.executable, "-c", code, __file__, str(tmp_path),
                                   str((2 * round_ + w + 1) * 100_000), str(capacity)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                 for w in range(2)]
        try:
            for proc in procs:  # both are past start-up and evicting
                for _ in range(5):
                    assert proc.stdout is not None
                    assert proc.stdout.readline(), proc.communicate()[1].decode()[-2000:]
            for proc in procs:
                time.sleep(rng.uniform(0, 0.08))  # a save takes ~40 ms
                proc.send_signal(signal.SIGKILL)
        finally:
            for proc in procs:
                proc.kill()  # no-op when already dead; never leave a writer looping
                proc.communicate()
        assert [proc.returncode for proc in procs] == [-signal.SIGKILL] * 2

        folder = tmp_path / "self_play_replay_buffer"
        assert all(n.startswith(("shard-", ".tmp-", ".next_seq")) for n in os.listdir(folder))
        reader = DiskReplayBuffer(tmp_path, capacity=capacity, dtype=torch.float32)
        n = reader.count()
        assert capacity <= n <= capacity + 2 * 99  # a shard per writer may beat eviction
        got = read_all(reader)
        assert reader.stats().corrupt_shards == 0
        assert len(got) == n
        assert len(set(indices(got))) == n  # nothing counted twice
        assert_rows_match(got)

    reader.save_pairs(make_batch(range(3)), "self_play", DECAYS)
    assert reader.count() == capacity  # the next write evicts any overshoot
    assert len(read_all(reader)) == capacity


# ---------------------------------------------------------------- concurrency
def test_concurrent_writer_threads_get_unique_seqs_and_exact_counts(tmp_path: Path) -> None:
    shared = DiskReplayBuffer(tmp_path, capacity=10_000)
    bufs = [shared, shared, DiskReplayBuffer(tmp_path, capacity=10_000),
            DiskReplayBuffer(tmp_path, capacity=10_000)]
    sizes = np.random.default_rng(3).integers(1, 7, size=(4, 8))
    errors: list[BaseException] = []

    def write(w: int, base: int) -> None:
        try:
            start = base + 1000 * w
            for size in sizes[w]:
                bufs[w].save_pairs(make_batch(range(start, start + size)), "expert", DECAYS)
                start += size
        except BaseException as err:
            errors.append(err)

    def run(base: int) -> None:
        threads = [threading.Thread(target=write, args=(w, base)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    run(0)
    files = shard_files(tmp_path)
    assert len(files) == sizes.size
    assert len({f.split("-")[1] for f in files}) == sizes.size
    assert shared.count() == int(sizes.sum())
    expected = {1000 * w + k for w in range(4) for k in range(int(sizes[w].sum()))}
    assert set(indices(read_all(shared))) == expected

    for buf in bufs:
        buf.capacity = 25
    run(100_000)  # now every write also evicts, from four threads at once
    assert shared.count() == 25
    got = read_all(shared)
    assert len(set(indices(got))) == 25
    assert min(indices(got)) >= 100_000  # FIFO: the first round is gone


def test_load_batch_draws_pairs_uniformly(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path)
    buf.save_pairs(make_batch([0]), "expert", DECAYS)
    buf.save_pairs(make_batch(range(1, 10)), "expert", DECAYS)
    draws = indices(buf.load_batch(3000, "expert", np.random.default_rng(0)))
    assert 200 < draws.count(0) < 400  # 1 of 10 pairs, not 1 of 2 shards
    assert len(set(indices(buf.load_batch(10, "expert", np.random.default_rng(1))))) == 10


# ---------------------------------------------------------------- buffers and input
def test_expert_and_self_play_are_separate(tmp_path: Path) -> None:
    buf = DiskReplayBuffer(tmp_path, capacity=5)
    buf.save_pairs(make_batch(range(5)), "expert", DECAYS)
    buf.save_pairs(make_batch(range(100, 105)), "self_play", DECAYS)
    buf.save_pairs(make_batch(range(105, 107)), "self_play", DECAYS)
    assert buf.counts() == {"expert": 5, "self_play": 5}
    assert buf.count() == 10
    assert sorted(indices(read_all(buf, "expert"))) == list(range(5))
    assert sorted(indices(read_all(buf, "self_play"))) == list(range(102, 107))
    assert len(read_all(buf)) == 10
    buf.clear("expert")
    assert buf.counts() == {"expert": 0, "self_play": 5}
    with pytest.raises(EmptyBufferError, match="expert"):
        buf.load_batch(1, "expert")
    buf.save_pairs(make_batch(range(3)), "expert", DECAYS)
    assert shard_files(tmp_path) == ["shard-000000000001-000003.pt"]  # seqs never reused
    buf.clear()
    assert buf.counts() == dict.fromkeys(BUFFERS, 0)


def test_bad_input_raises_config_error(tmp_path: Path) -> None:
    for capacity in (0, -3, True, 2.5):
        with pytest.raises(ConfigError, match="capacity"):
            DiskReplayBuffer(tmp_path, capacity=capacity)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dtype"):
        DiskReplayBuffer(tmp_path, dtype=torch.int8)
    buf = DiskReplayBuffer(tmp_path)
    with pytest.raises(ConfigError, match="'expert', 'self_play'"):
        buf.save_pairs(make_batch([1]), "selfplay", DECAYS)
    for call in (lambda: buf.load_batch(1, "best"), lambda: buf.count("best"),
                 lambda: buf.clear("best")):
        with pytest.raises(ConfigError, match="unknown replay buffer"):
            call()
    for n in (0, -1):
        with pytest.raises(ConfigError, match="n: must be an int >= 1"):
            buf.load_batch(n)
    with pytest.raises(EmptyBufferError, match=r"expert\+self_play.*Fix: save_pairs"):
        buf.load_batch(4)
    with pytest.raises(ConfigError, match="decays"):
        buf.save_pairs(make_batch([1]), "expert", {})
