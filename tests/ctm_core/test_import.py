"""Importing reference checkpoints whole: backbone rebuilt and loaded, never random."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from thinkgym.ctm_core.checkpoint import load_checkpoint, resolve_checkpoint
from thinkgym.ctm_core.convert import convert_reference_state_dict, import_reference_checkpoint
from thinkgym.errors import CheckpointError

LENGTH = 8
KW = dict(d_model=20, d_input=12, heads=3, n_synch_out=4, n_synch_action=5,
          synapse_depth=1, memory_length=6, deep_nlms=True, memory_hidden_dims=3,
          do_layernorm_nlm=False, out_dims=2 * LENGTH, prediction_reshaper=[LENGTH, 2],
          neuron_select_type="random-pairing", backbone_dim=12, n_random_pairing_self=2)


def _reference_module() -> ModuleType:
    name = "thinkgym_tests_reference_ctm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("reference_ctm.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


def reference(dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(7)
    ref = _reference_module().ReferenceParityCTM(length=LENGTH, **KW).to(dtype)
    return ref.randomise_(8).eval()


def bits(n: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(9)
    return torch.where(torch.rand(n, LENGTH, generator=gen) < 0.5, -1.0, 1.0)


def test_backbone_is_rebuilt_and_every_tick_matches_the_reference() -> None:
    ref = reference()
    model = convert_reference_state_dict(ref.state_dict(), heads=3,
                                         prediction_shape=(LENGTH, 2)).build().eval()
    assert type(model.backbone).__name__ == "ReferenceParityBackbone"
    x = bits().double()
    with torch.no_grad():
        gold = ref.forward_bits(x, iterations=10)
        ours = model.rollout(x, ticks=10)
    scale = float(gold["logits"].abs().max())
    torch.testing.assert_close(ours.logits, gold["logits"], rtol=0, atol=1e-10 * max(1, scale))
    torch.testing.assert_close(ours.certainty, gold["certainty"], rtol=0, atol=1e-10)


def test_every_parameter_comes_from_the_state_dict() -> None:
    ref = reference()
    sd = ref.state_dict()
    model = convert_reference_state_dict(sd, heads=3, prediction_shape=(LENGTH, 2)).build()
    emb = model.backbone.embedding.weight
    assert torch.equal(emb, sd["backbone.embedding.weight"])
    assert torch.equal(model.backbone.position.bias, sd["positional_embedding.projection.bias"])


def test_no_path_returns_random_backbone_weights() -> None:
    from thinkgym.ctm_core.tasks.parity import ParityBackbone

    ref = reference()
    sd = ref.state_dict()
    converted = convert_reference_state_dict(sd, heads=3, prediction_shape=(LENGTH, 2))
    with pytest.raises(CheckpointError, match="nothing may stay"):  # our design, other keys
        converted.build(backbone=ParityBackbone(LENGTH, 12).double())
    core = {k: v for k, v in sd.items()
            if not k.startswith(("backbone.", "positional_embedding."))}
    bare = convert_reference_state_dict(core, heads=3, prediction_shape=(LENGTH, 2))
    with pytest.raises(CheckpointError, match="hold no backbone"):
        bare.build(backbone=ParityBackbone(LENGTH, 12).double())
    assert bare.build().backbone is None  # tokens in: nothing random
    assert converted.build(core_only=True).backbone is None


@pytest.mark.parametrize(("extra", "named"), [
    ({"backbone.conv1.weight": torch.zeros(4, 3, 3, 3),
      "backbone.layer1.0.conv1.weight": torch.zeros(4, 4, 3, 3)}, "ResNet"),
    ({"positional_embedding.W_r.weight": torch.zeros(4, 2)}, "Fourier"),
])
def test_unsupported_backbones_are_named(extra: dict, named: str) -> None:
    sd = {k: v for k, v in reference().state_dict().items()
          if not k.startswith(("backbone.", "positional_embedding."))}
    converted = convert_reference_state_dict({**sd, **extra}, heads=3,
                                             prediction_shape=(LENGTH, 2))
    with pytest.raises(CheckpointError, match=named):
        converted.build()


def _reference_file(tmp_path: Path) -> Path:
    ref = reference(torch.float32)
    path = tmp_path / "checkpoint_99.pt"
    torch.save({"model_state_dict": ref.state_dict(), "iteration": 99,
                "args": argparse.Namespace(heads=3, iterations=12, d_model=20,
                                           backbone_type="parity_backbone")}, path)
    return path


def test_import_writes_a_checkpoint_every_consumer_loads(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.tools import TOOLS

    monkeypatch.setenv("THINKGYM_CTM_DIR", str(tmp_path / "store"))
    src = _reference_file(tmp_path)
    out = tmp_path / "store" / "ref8.pt"
    import_reference_checkpoint(src, out)
    assert resolve_checkpoint("ref8") == out  # a bare name finds the user directory
    model, _, meta = load_checkpoint("ref8")
    assert meta.origin is not None
    assert meta.origin["iteration"] == 99
    assert meta.backbone == {"kind": "reference_parity",
                             "kwargs": {"length": LENGTH, "d_embedding": 12}}
    ref = reference(torch.float32)
    x = bits()
    with torch.no_grad():
        gold = ref.forward_bits(x, iterations=12)["logits"]
        ours = model.rollout(x, ticks=12).logits
    torch.testing.assert_close(ours, gold, rtol=0, atol=2e-4 * max(1.0, float(gold.abs().max())))
    env = gym.make("CTMThink-v0", task="parity", checkpoint="ref8")
    env.reset(seed=0)
    env.step(0)
    answer = TOOLS.get("ctm_think")(task="parity", input="01101001", checkpoint="ref8")
    assert "answer" in answer.lower()


def test_import_cli_then_eval(tmp_path: Path) -> None:
    env = {**os.environ, "THINKGYM_CTM_DIR": str(tmp_path / "store"), "OMP_NUM_THREADS": "1"}
    src = _reference_file(tmp_path)
    run = [sys.executable, "-m", "thinkgym.cli", "ctm"]
    proc = subprocess.run([*run, "import", str(src), "--out", "ref8", "--eval-samples", "32"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "wrote" in proc.stdout
    proc = subprocess.run([*run, "eval", "--checkpoint", "ref8", "--samples", "16",
                           "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-1500:]


def test_import_errors_say_what_is_missing(tmp_path: Path) -> None:
    ref = reference(torch.float32)
    bare = tmp_path / "bare.pt"
    torch.save(ref.state_dict(), bare)
    with pytest.raises(CheckpointError, match="heads"):
        import_reference_checkpoint(bare, tmp_path / "x.pt")
    import_reference_checkpoint(bare, tmp_path / "x.pt", heads=3)  # a bare state dict works
    with pytest.raises(CheckpointError, match="not supported"):
        import_reference_checkpoint(bare, tmp_path / "y.pt", task="maze", heads=3)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        import_reference_checkpoint(junk, tmp_path / "z.pt", heads=3)
