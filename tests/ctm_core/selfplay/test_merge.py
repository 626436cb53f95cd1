"""Weight-space merges: exact small cases, the float/non-float rules, a merged CTM that runs."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from thinkgym.ctm_core.selfplay.merge import (
    MERGE_METHODS,
    average,
    dare,
    merge,
    slerp,
    task_arithmetic,
    task_vectors,
    ties,
)
from thinkgym.errors import ConfigError


def _sd(w: list[float], b: float = 0.0, idx: tuple[int, ...] = (0, 2)) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(w), "b": torch.tensor([b]), "idx": torch.tensor(idx)}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_average_of_identical_dicts_is_the_identity() -> None:
    sd = {"w": torch.randn(3, 4), "h": torch.randn(5).half(), "idx": torch.arange(4)}
    out = average([sd, copy.deepcopy(sd), copy.deepcopy(sd)])
    assert list(out) == list(sd)
    for k in sd:  # equal up to float32 rounding of (x / 3) * 3
        assert out[k].dtype == sd[k].dtype
        assert torch.allclose(out[k], sd[k], rtol=1e-6, atol=1e-7)
    assert torch.equal(out["h"], sd["h"])  # far below a float16 step: exact


def test_average_with_weights() -> None:
    out = average([_sd([0.0, 4.0], 1.0), _sd([4.0, 0.0], 5.0)], weights=[3.0, 1.0])
    assert _equal(out, _sd([1.0, 3.0], 2.0))


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, math.nan]])
def test_average_refuses_bad_weights(weights: list[float]) -> None:
    with pytest.raises(ConfigError, match="weights"):
        average([_sd([1.0, 2.0]), _sd([3.0, 4.0])], weights=weights)


def test_slerp_endpoints() -> None:
    a = {"w": torch.randn(10), "i": torch.arange(3)}
    b = {"w": torch.randn(10), "i": torch.arange(3)}
    assert torch.allclose(slerp(a, b, 0.0)["w"], a["w"], atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0)["w"], b["w"], atol=1e-6)
    assert torch.equal(slerp(a, b, 0.5)["i"], a["i"])


def test_slerp_of_orthogonal_vectors_keeps_the_norm_and_follows_the_arc() -> None:
    a, b = {"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([0.0, 2.0])}
    for t in (0.25, 0.5, 0.8):
        out = slerp(a, b, t)["w"]
        assert out.norm().item() == pytest.approx(2.0, abs=1e-5)
        angle = math.atan2(out[1].item(), out[0].item())
        assert angle == pytest.approx(t * math.pi / 2, abs=1e-5)
    assert average([a, b])["w"].norm().item() == pytest.approx(math.sqrt(2.0))  # the chord


def test_slerp_falls_back_to_linear_for_colinear_and_zero_vectors() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "z": torch.zeros(2)}
    b = {"w": torch.tensor([3.0, 6.0]), "z": torch.tensor([1.0, 1.0])}
    out = slerp(a, b, 0.5)
    assert torch.allclose(out["w"], torch.tensor([2.0, 4.0]))
    assert torch.allclose(out["z"], torch.tensor([0.5, 0.5]))


def test_task_arithmetic_of_one_model_with_scale_one_is_that_model() -> None:
    base, tuned = _sd([1.0, 1.0], 1.0), _sd([2.0, -3.0], 0.5)
    assert _equal(task_arithmetic(base, [tuned]), tuned)
    taus = task_vectors(base, [tuned])
    assert set(taus[0]) == {"w", "b"}  # no task vector for the index buffer
    assert torch.equal(taus[0]["w"], torch.tensor([1.0, -4.0]))


def test_task_arithmetic_sums_the_scaled_task_vectors() -> None:
    base = _sd([1.0, 1.0])
    out = task_arithmetic(base, [_sd([2.0, 1.0]), _sd([1.0, 3.0])], scale=0.5)
    assert torch.allclose(out["w"], torch.tensor([1.5, 2.0]))


def test_ties_with_full_density_and_agreeing_signs_is_base_plus_mean_delta() -> None:
    base = _sd([1.0, -1.0, 0.0], 2.0)
    models = [_sd([2.0, -2.0, 0.5], 3.0), _sd([4.0, -4.0, 1.5], 2.5)]
    mean_delta = [2.0, -2.0, 1.0]
    out = ties(base, models, density=1.0)
    assert _equal(out, _sd([1.0 + mean_delta[0], -1.0 + mean_delta[1], mean_delta[2]], 2.75))


def test_ties_resolves_sign_conflicts_as_computed_by_hand() -> None:
    base = {"w": torch.zeros(3)}
    deltas = [[1.0, -2.0, 3.0], [2.0, 1.0, -1.0], [-4.0, 1.0, 0.0]]
    # sums [-1, 0, 2] elect signs [-, 0, +]: entry 0 keeps only -4, entry 1 nothing,
    # entry 2 only the agreeing 3 (a zero delta does not vote or count in the mean)
    out = ties(base, [{"w": torch.tensor(d)} for d in deltas], density=1.0)
    assert torch.equal(out["w"], torch.tensor([-4.0, 0.0, 3.0]))
    two = ties(base, [{"w": torch.tensor(d)} for d in deltas[:2]], density=1.0, scale=2.0)
    assert torch.equal(two["w"], 2.0 * torch.tensor([1.5, -2.0, 3.0]))


def test_ties_trims_to_the_largest_magnitudes() -> None:
    base = {"w": torch.zeros(4)}
    a, b = {"w": torch.tensor([5.0, 0.1, -0.2, 1.0])}, {"w": torch.tensor([0.3, -6.0, 0.1, 0.2])}
    # density 0.25 keeps one entry of each: a -> 5 at 0, b -> -6 at 1
    out = ties(base, [a, b], density=0.25)
    assert torch.equal(out["w"], torch.tensor([5.0, -6.0, 0.0, 0.0]))


def test_dare_without_drop_is_the_mean_task_vector() -> None:
    base = _sd([1.0, 1.0], 0.0)
    models = [_sd([3.0, 0.0], 1.0), _sd([1.0, 4.0], 3.0)]
    assert _equal(dare(base, models, drop=0.0), average(models))
    assert _equal(dare(base, models, drop=0.0, scale=2.0), task_arithmetic(base, models))


def test_dare_is_deterministic_under_a_seed() -> None:
    base = {"w": torch.zeros(1000)}
    models = [{"w": torch.randn(1000)}, {"w": torch.randn(1000)}]
    one, again = dare(base, models, drop=0.5, seed=3), dare(base, models, drop=0.5, seed=3)
    assert torch.equal(one["w"], again["w"])
    assert not torch.equal(one["w"], dare(base, models, drop=0.5, seed=4)["w"])


def test_dare_rescaling_keeps_the_expected_value() -> None:
    n = 200_000
    base, tuned = {"w": torch.full((n,), 2.0)}, {"w": torch.full((n,), 3.0)}  # delta 1
    out = dare(base, [tuned], drop=0.9, seed=0)["w"] - 2.0
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.1, abs=0.005)  # sd 0.0007
    assert torch.allclose(out[kept], torch.tensor(10.0))
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)  # sd of the mean 3/sqrt(n)


def test_inputs_are_not_modified_and_outputs_share_no_storage() -> None:
    base = _sd([1.0, 2.0])
    models = [_sd([3.0, 0.0]), _sd([1.0, 5.0])]
    before = copy.deepcopy([base, *models])
    outs = [merge(m, base, models) for m in MERGE_METHODS]
    assert all(_equal(x, y) for x, y in zip([base, *models], before, strict=True))
    for out in outs:
        for t in out.values():
            t.add_(1)
    assert all(_equal(x, y) for x, y in zip([base, *models], before, strict=True))


def test_non_float_tensors_are_copied_or_refused_when_they_differ() -> None:
    out = average([_sd([1.0, 2.0]), _sd([3.0, 4.0])])
    assert out["idx"].dtype == torch.int64
    assert torch.equal(out["idx"], torch.tensor([0, 2]))
    with pytest.raises(ConfigError, match="'idx'"):
        average([_sd([1.0, 2.0]), _sd([3.0, 4.0], idx=(0, 3))])


@pytest.mark.parametrize("method", MERGE_METHODS)
def test_mismatched_keys_and_shapes_name_the_key(method: str) -> None:
    base = _sd([1.0, 2.0])
    missing = {k: v for k, v in _sd([1.0, 2.0]).items() if k != "b"}
    with pytest.raises(ConfigError, match="'b'"):
        merge(method, base, [missing, _sd([1.0, 2.0])])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'w'.*\(2,\).*\(3,\)"):
        merge(method, base, [_sd([1.0, 2.0]), _sd([1.0, 2.0, 3.0])])  # type: ignore[arg-type]


def test_dispatcher_and_parameter_checks() -> None:
    base, models = _sd([1.0, 2.0]), [_sd([3.0, 0.0]), _sd([1.0, 5.0])]
    assert _equal(merge("average", base, models), average(models))
    assert _equal(merge("slerp", base, models, t=0.3), slerp(*models, 0.3))
    with pytest.raises(ConfigError, match="unknown merge method"):
        merge("soup", base, models)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exactly two"):
        merge("slerp", base, [*models, base])
    with pytest.raises(ConfigError, match="density"):
        ties(base, models, density=0.0)
    with pytest.raises(ConfigError, match="drop"):
        dare(base, models, drop=1.0)
    with pytest.raises(ConfigError, match="no state dicts"):
        average([])


def test_half_precision_is_merged_in_float32_and_cast_back() -> None:
    base = {"w": torch.full((4,), 1000.0, dtype=torch.float16)}
    tuned = {"w": torch.full((4,), 1001.0, dtype=torch.float16)}
    out = task_arithmetic(base, [tuned, tuned], scale=0.5)["w"]
    assert out.dtype == torch.float16
    assert torch.equal(out, tuned["w"])


@pytest.mark.parametrize("method", MERGE_METHODS)
def test_a_merged_ctm_loads_and_runs(tiny_run, method: str) -> None:  # type: ignore[no-untyped-def]
    task, model = tiny_run
    base = model.state_dict()
    cohort = []
    for k in range(2):
        torch.manual_seed(k)
        tuned = {n: t + 0.01 * torch.randn_like(t) if t.is_floating_point() else t
                 for n, t in base.items()}
        cohort.append(tuned)
    merged_model = copy.deepcopy(model)
    merged_model.load_state_dict(merge(method, base, cohort))  # type: ignore[arg-type]
    assert torch.equal(merged_model.synch_action_i, model.synch_action_i)
    with torch.no_grad():
        out = merged_model(task.batch(range(4), "train").inputs)
    assert torch.isfinite(out.logits).all()
    assert not torch.equal(merged_model.start_z, model.start_z)
