"""The Ray generator writes exactly the pairs the serial generator writes.

The Ray tests start a local two-CPU Ray instance in this process (skipped without the
``ray`` extra); the filter actor's bookkeeping and the missing-ray error need no Ray.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from thinkgym.ctm_core.selfplay.distributed import FilterActor, row_bounds, run_distributed
from thinkgym.ctm_core.selfplay.filters import Chunk, StreamingFilter
from thinkgym.ctm_core.selfplay.generator import DataGenerator, GeneratorConfig
from thinkgym.ctm_core.selfplay.storage import DataId
from thinkgym.ctm_core.state import TENSOR_FIELDS
from thinkgym.errors import ConfigError, ThinkgymError

TINY = {"d_model": 16, "d_input": 8, "heads": 2, "n_synch_out": 4, "n_synch_action": 4,
        "memory_length": 3, "memory_hidden_dims": 2, "iterations": 6}
# Uneven everything: 7 rows split 4/3, 13 ticks in chunks of 4, 4, 4, 1 (+ the start state);
# noise on weights and start states; both weight sources appear with this seed.
CFG = GeneratorConfig(batches=4, batch_size=7, ticks=13, chunk_ticks=4, rule="loose",
                      p_best=0.5, weight_noise=0.01, activation_noise=0.05, seed=2)


# ---------------------------------------------------------------------- without Ray
def _chunks(rollout: int, loss: torch.Tensor, cert: torch.Tensor, sizes: list[int]
            ) -> list[Chunk]:
    rows, ticks = loss.shape
    states = {k: torch.randn(rows, ticks, 3) for k in TENSOR_FIELDS}
    ids = [DataId("parity", {}, "train", i) for i in range(rows)]
    decays = (torch.ones(3), torch.ones(3))
    out, start = [], 0
    for n in sizes:
        out.append(Chunk(rollout, start, {k: v[:, start:start + n] for k, v in states.items()},
                         loss[:, start:start + n], cert[:, start:start + n], f"w{rollout}",
                         "best", ids, last=start + n == ticks, decays=decays))
        start += n
    return out


def test_filter_actor_keeps_interleaved_rollouts_apart() -> None:
    gen = torch.Generator().manual_seed(0)
    a = _chunks(0, torch.rand(3, 9, generator=gen), torch.rand(3, 9, generator=gen), [3, 4, 2])
    b = _chunks(1, torch.rand(3, 9, generator=gen), torch.rand(3, 9, generator=gen), [5, 4])
    actor = FilterActor("loose")
    jobs = [actor.push(c) for c in (a[0], b[0], a[1], b[1], a[2])]  # two producers' chunks
    ref = [StreamingFilter("loose"), StreamingFilter("loose")]
    want = [p for f, chunks in zip(ref, (a, b), strict=True) for c in chunks
            if (p := f.push(c)) is not None]
    stats = actor.stats()
    assert stats.evaluated == 2 * 3 * 7
    assert stats.open_rollouts == []
    assert stats.accepted == sum(f.accepted for f in ref) == sum(len(p) for p in want) > 0
    got = sorted((p.weight_ids[i], p.data_ids[i].index, int(p.tick[i]))
                 for j in jobs if j is not None for p in [j.pairs] for i in range(len(p)))
    assert got == sorted((p.weight_ids[i], p.data_ids[i].index, int(p.tick[i]))
                         for p in want for i in range(len(p)))
    assert all(j.buffer == "self_play" for j in jobs if j is not None)


def test_filter_actor_refuses_chunks_out_of_order() -> None:
    gen = torch.Generator().manual_seed(1)
    a = _chunks(0, torch.rand(2, 9, generator=gen), torch.rand(2, 9, generator=gen), [3, 3, 3])
    actor = FilterActor("strict")
    actor.push(a[0])
    with pytest.raises(ThinkgymError, match="out of tick order"):
        actor.push(a[2])  # a gap would silently skip the pairs straddling chunk 1
    actor.push(a[1])
    actor.push(a[2])
    with pytest.raises(ThinkgymError, match="finished rollout"):
        actor.push(a[0])


def test_row_bounds_match_the_thread_pipeline_split() -> None:
    assert row_bounds(7, 2) == [0, 4, 7]
    assert row_bounds(64, 3) == [0, 21, 43, 64]


def test_without_ray_the_module_imports_and_names_the_fix() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"  # makes `import ray` fail
            "from thinkgym.ctm_core.selfplay import distributed as d\n"
            "from thinkgym.ctm_core.selfplay.generator import GeneratorConfig\n"
            "try:\n"
            "    d.run_distributed('w', 'b', GeneratorConfig())\n"
            "except ImportError as err:\n"
            "    print(type(err).__name__, err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.startswith("DependencyNotInstalled")
    assert "pip install 'thinkgym[ray]'" in out.stdout


# ---------------------------------------------------------------------- with Ray
@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from thinkgym.ctm_core.selfplay.weights import WeightManager
    from thinkgym.ctm_core.train import TrainConfig, build_run

    task, model = build_run(TrainConfig(task="parity", task_config={"length": 4}, model=TINY))
    root = tmp_path_factory.mktemp("weights")
    WeightManager.create(root, model, task, n_random_experts=2, seed=0)
    return root


@pytest.fixture
def one_thread() -> Iterator[None]:
    # The actors run torch with one thread; so must the serial reference, or a different
    # reduction order could flip a near-tie comparison.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pairs(root: Path, buffer: str, n: int) -> dict[tuple[str, int, int], torch.Tensor]:
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

    if n == 0:
        return {}
    batch = DiskReplayBuffer(root, dtype=torch.float32).load_batch(n, buffer, rng=0)
    keys = [(w, d.index, int(t))
            for w, d, t in zip(batch.weight_ids, batch.data_ids, batch.tick, strict=True)]
    assert len(set(keys)) == n  # load_batch(count) returns every pair once
    return {k: torch.cat([batch.state_t["z"][i], batch.state_t2["A"][i].flatten()])
            for i, k in enumerate(keys)}


# Two producers (half a CPU each, to fit 2 CPUs) interleave their rollouts' chunks at both
# filters, two writers share the buffer, max_in_flight=2 makes the driver wait; and the
# smallest plan (one actor per stage: a chunk is not split) with the default bound.
PLANS = [dict(producers=2, filter_workers=2, writers=2, max_in_flight=2,
              actor_cpus={"producer": 0.5}),
         dict(producers=1, filter_workers=1, writers=1)]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("plan", PLANS, ids=["2-2-2", "1-1-1"])
def test_ray_writes_the_pairs_the_serial_generator_writes(
        ray_cluster: Any, weights_root: Path, tmp_path: Path, plan: dict[str, Any]) -> None:
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
    from thinkgym.ctm_core.selfplay.weights import WeightManager

    serial_root, ray_root = tmp_path / "serial", tmp_path / "ray"
    serial_buf = DiskReplayBuffer(serial_root, dtype=torch.float32)
    want = DataGenerator(WeightManager(weights_root), serial_buf).run(
        replace(CFG, mode="serial"))
    assert want.pairs_accepted > 0
    assert set(want.rollouts_by_source) == {"best", "expert"}

    progress: list[int] = []
    got = run_distributed(weights_root, ray_root, CFG, dtype=torch.float32,
                          progress=lambda r: progress.append(r.rollouts), **plan)

    assert got.mode == "ray"
    assert len(progress) == CFG.batches
    for name in ("rollouts", "pairs_evaluated", "pairs_accepted", "pairs_written",
                 "written_by_buffer", "rollouts_by_source", "accepted_by_tick"):
        assert getattr(got, name) == getattr(want, name), name
    counts = DiskReplayBuffer(ray_root, dtype=torch.float32).counts()
    assert got.pairs_accepted == got.pairs_written == sum(counts.values())  # no pair lost
    assert counts == serial_buf.counts()
    for name, n in counts.items():
        serial, ray_pairs = _pairs(serial_root, name, n), _pairs(ray_root, name, n)
        assert serial.keys() == ray_pairs.keys()
        for key, value in serial.items():  # the same states, not only the same ticks
            assert torch.equal(ray_pairs[key], value), key


def test_ray_refuses_more_actors_than_the_cluster_hosts(
        ray_cluster: Any, weights_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too few CPUs"):
        run_distributed(weights_root, tmp_path / "buf", CFG, producers=3)
    with pytest.raises(ConfigError, match="producers"):
        run_distributed(weights_root, tmp_path / "buf", CFG, producers=0)
