from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from thinkgym.agents.mag import MAGConfig, MAGPolicy, MAGPolicyConfig
from thinkgym.agents.tiny import load_tiny_model, tiny_model_path
from thinkgym.errors import ConfigError, NumericalError
from thinkgym.training.mag import (
    MAGTrainConfig,
    _batch,
    calibrate_threshold,
    detection_loss,
    encode_episodes,
    held_out_entity,
    log_episodes,
    log_train_validation,
    stop_steps,
    threshold_candidates,
    train_detection,
    train_mag,
)

SMALL = MAGPolicyConfig(block=MAGConfig(d_model=16, num_heads=2, window=16, chunk_size=16,
                                        memory_hidden=16), head_hidden=16)
ENV = {"split": "train", "top_k": 1}


@pytest.fixture(scope="module")
def episodes():
    return log_episodes(range(8), budget=3, env_kwargs=ENV)


def _policy():
    torch.manual_seed(0)
    lm, tok = load_tiny_model()
    return MAGPolicy(lm, tok, SMALL)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_stage1_leaves_generation_weights_untouched(episodes) -> None:
    policy = _policy()
    enc = encode_episodes(episodes, policy.tokenizer, 3)
    config = MAGTrainConfig(stage=1, max_steps=30, batch_size=4, budget=3)
    batch = _batch(enc, 1.0)
    with torch.no_grad():
        before_loss, _ = detection_loss(policy, batch, config)
    lm_before, det_before = _snapshot(policy.lm), _snapshot(policy.head)
    log = train_detection(policy, enc, config)
    assert all(torch.equal(lm_before[k], v) for k, v in policy.lm.state_dict().items())
    assert all(not p.requires_grad for p in policy.generation_parameters())
    assert any(not torch.equal(det_before[k], v) for k, v in policy.head.state_dict().items())
    with torch.no_grad():
        after_loss, _ = detection_loss(policy, batch, config)
    assert float(after_loss) < 0.5 * float(before_loss)  # it fits the TD targets
    assert len(log) == 30
    assert "loss/value" in log[0]


def test_non_finite_loss_stops_training_with_its_step(episodes) -> None:
    policy = _policy()
    enc = encode_episodes(episodes, policy.tokenizer, 3)
    hidden = [torch.full((len(e.ids), policy.lm.config.hidden_size), float("nan"))
              for e in enc]
    with pytest.raises(NumericalError, match="non-finite at step 0"):
        train_detection(policy, enc, MAGTrainConfig(stage=1, max_steps=3, batch_size=2,
                                                    budget=3), hidden=hidden)


def test_stage2_tunes_the_lm_jointly(episodes) -> None:
    policy = _policy()
    enc = encode_episodes(episodes, policy.tokenizer, 3)
    lm_before = _snapshot(policy.lm)
    log = train_detection(policy, enc, MAGTrainConfig(stage=2, max_steps=2, batch_size=2,
                                                      lm_learning_rate=1e-3, budget=3))
    assert any(not torch.equal(lm_before[k], v) for k, v in policy.lm.state_dict().items())
    assert "loss/lm_nll" in log[-1]
    assert log[-1]["loss/lm_nll"] > 0


def test_stop_steps_and_calibration() -> None:
    import numpy as np

    adv = [(np.array([0.5, 0.05, 0.0]), np.zeros(3)), (np.array([0.5, 0.5, 0.5]), np.zeros(3))]
    assert stop_steps(adv, 0.1) == [1, 2]  # first step under tau, else the last step
    assert stop_steps(adv, 0.0) == [2, 2]

    class E:  # the two fields calibrate_threshold reads
        def __init__(self, correct):
            self.correct, self.ends = correct, [0] * len(correct)

    eps = [E([False, True, True]), E([False, False, True])]
    tau, table = calibrate_threshold(adv, eps, (0.0, 0.1, 0.6), 0.0)
    assert tau == 0.1  # 0.6 stops both at step 0 and loses them; 0.1 is as good as the full
    assert table["0.1"] == {"success": 1.0, "mean_steps": 2.5}


def test_threshold_candidates_follow_the_heads_scale() -> None:
    """The same stop decisions at any value scale: the candidates are the head's quantiles."""
    import numpy as np

    rng = np.random.default_rng(0)

    class E:
        def __init__(self, correct):
            self.correct, self.ends = correct, [0] * len(correct)

    eps = [E(list(rng.random(5) < 0.3 + 0.15 * k)) for k in range(5) for _ in range(8)]
    adv = [(rng.random(5) * (5 - k), rng.random(5)) for k in range(5) for _ in range(8)]
    cands = threshold_candidates(adv, levels=10)
    assert cands[0] == 0.0
    assert len(cands) == 11
    assert max(cands) == pytest.approx(max(float(np.max(a / (1 + h))) for a, h in adv))
    tau, table = calibrate_threshold(adv, eps, None, 0.05)
    big = [(a * 1000.0, h) for a, h in adv]
    tau_big, table_big = calibrate_threshold(big, eps, None, 0.05)
    assert tau_big == pytest.approx(1000.0 * tau, rel=1e-4)
    assert stop_steps(big, tau_big) == stop_steps(adv, tau)
    assert [r["mean_steps"] for r in table_big.values()] == [
        r["mean_steps"] for r in table.values()]


def test_train_mag_stage1_then_2_then_3(tmp_path) -> None:
    """The three stages chain through their output directories (tiny model, CPU)."""
    common = {"env_kwargs": ENV, "num_episodes": 6, "num_validation": 4, "budget": 3,
              "batch_size": 3, "calibrate": False}
    s1 = train_mag(MAGTrainConfig(stage=1, max_steps=3, output_dir=str(tmp_path / "s1"),
                                  **common), str(tiny_model_path()), policy_config=SMALL,
                   progress=False)
    report = json.loads((s1 / "mag_train.json").read_text())
    assert report["base_threshold"] == MAGTrainConfig().step_cost  # tau's base = lambda
    assert "0.0" in report["validation"]
    assert len(report["validation"]) <= 25
    assert not (s1 / "config.json").exists()  # stage 1 does not copy the unchanged LM
    s2 = train_mag(MAGTrainConfig(stage=2, max_steps=1, output_dir=str(tmp_path / "s2"),
                                  **common), str(s1), progress=False)
    assert (s2 / "config.json").is_file()
    assert (s2 / "thinkgym_tiny.json").is_file()
    MAGPolicy.load(s2)  # the tuned LM + block
    s3 = train_mag(MAGTrainConfig(
        stage=3, max_steps=2, output_dir=str(tmp_path / "s3"), env_kwargs=ENV,
        grpo={"num_generations": 2, "prompts_per_step": 1, "num_prompts": 4,
              "max_new_tokens": 16, "max_completion_tokens": 128, "learning_rate": 1e-4}),
        str(s2), progress=False)
    state = json.loads((s3 / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert MAGPolicy.load(s3).config.base_threshold == report["base_threshold"]


def test_stage1_calibrates_the_threshold_on_validation_by_default(tmp_path) -> None:
    out = train_mag(MAGTrainConfig(stage=1, max_steps=2, env_kwargs=ENV, num_episodes=4,
                                   num_validation=4, budget=2, batch_size=2,
                                   thresholds=(0.0, 1e6), output_dir=str(tmp_path)),
                    str(tiny_model_path()), policy_config=SMALL, progress=False)
    report = json.loads((out / "mag_train.json").read_text())
    table = report["validation"]
    full = max(r["success"] for r in table.values())
    ok = [float(t) for t, r in table.items() if r["success"] >= full - 0.005]
    best = min(ok, key=lambda t: (table[str(t)]["mean_steps"], t))
    assert report["base_threshold"] == best
    assert MAGPolicy.load(out).config.base_threshold == best


def test_validation_questions_start_from_entities_training_never_starts_from() -> None:
    train, val = log_train_validation(12, 6, budget=1, fraction=0.3, env_kwargs=ENV)
    assert (len(train), len(val)) == (12, 6)
    assert not any(held_out_entity(n, 0.3) for e in train for n in e.start_entities)
    assert all(any(held_out_entity(n, 0.3) for n in e.start_entities) for e in val)
    trained = {n for e in train for n in e.start_entities}
    assert all(set(e.start_entities) - trained for e in val)  # a start training never saw
    # the split is a pure function of the names: same seeds, same episodes
    again, _ = log_train_validation(12, 6, budget=1, fraction=0.3, env_kwargs=ENV)
    assert [e.seed for e in again] == [e.seed for e in train]


def test_entity_split_too_small_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="num_validation"):
        log_train_validation(1, 3, budget=1, fraction=1e-9, env_kwargs=ENV)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"stage": 4}, "stage"), ({"gamma": 0.0}, "gamma"), ({"budget": 0}, "budget"),
    ({"validation_entity_fraction": 1.0}, "validation_entity_fraction")])
def test_config_validation_names_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        MAGTrainConfig(**kwargs)


def test_cli_runs_stage1(tmp_path) -> None:
    from thinkgym.cli import main

    out = tmp_path / "cli"
    code = main(["train", "mag", "--stage", "1", "--episodes", "4", "--validation", "2",
                 "--validation-entities", "0.3", "--budget", "2", "--steps", "2",
                 "--batch-size", "2", "--env-arg", "top_k=1",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    assert (out / "mag.pt").is_file()
    assert json.loads((out / "mag_config.json").read_text())["lm"] == str(tiny_model_path())


def test_example_runs_end_to_end_on_the_tiny_model() -> None:
    """examples/mag_halting.py: the four stages print and three live episodes are played."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "mag_halting.py"
    out = subprocess.run([sys.executable, str(script), "--model", "tiny", "--train", "16",
                          "--eval", "8", "--steps", "5"], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    for line in ("2. stage 1: 5 steps", "full_budget   success 1.000  mean steps 6.00",
                 "4. live episodes"):
        assert line in out, out
    assert sum(line.strip().startswith("seed ") for line in out.splitlines()) == 3
