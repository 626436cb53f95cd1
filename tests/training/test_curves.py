from __future__ import annotations

from types import SimpleNamespace

from thinkgym.training.curves import _panels, make_curves_callback, plot_log_history, series

LOG = [
    {"step": 1, "reward": 0.1, "rewards/exact_match/mean": 0.0, "completions/mean_length": 90.0,
     "rewards/answer_guessing/mean": 0.5},
    {"step": 2, "reward": 0.4, "rewards/exact_match/mean": 0.25, "completions/mean_length": 80.0,
     "rewards/answer_guessing/mean": 0.25},
    {"step": 2, "train_runtime": 3.0},
]


def test_series_reads_only_events_with_the_key() -> None:
    assert series(LOG, "reward") == ([1.0, 2.0], [0.1, 0.4])
    assert series(LOG, "missing") == ([], [])


def test_panels_group_reward_length_and_detectors() -> None:
    panels = dict(_panels(LOG, ["answer_guessing", "format_gaming"], ["exact_match"]))
    assert panels["reward"] == ["reward", "rewards/exact_match/mean"]
    assert panels["completion length (tokens) / turns"] == ["completions/mean_length"]
    assert panels["detector rate"] == ["rewards/answer_guessing/mean"]
    sft = dict(_panels([{"step": 1, "loss": 2.0}], [], []))
    assert list(sft) == ["SFT loss / token accuracy"]


def test_plot_writes_a_png_and_skips_empty_history(tmp_path) -> None:
    out = plot_log_history(LOG, tmp_path / "c.png", detectors=["answer_guessing"])
    assert out is not None
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_log_history([], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_callback_redraws_every_n_logs_and_at_the_end(tmp_path) -> None:
    path = tmp_path / "curves.png"
    cb = make_curves_callback(path, detectors=["answer_guessing"], every=2)
    state = SimpleNamespace(log_history=LOG[:1], is_world_process_zero=True)
    cb.on_log(None, state, None)
    assert not path.exists()  # first log: not yet
    state.log_history = LOG[:2]
    cb.on_log(None, state, None)
    assert path.exists()
    path.unlink()
    cb.on_train_end(None, state, None)
    assert path.exists()
