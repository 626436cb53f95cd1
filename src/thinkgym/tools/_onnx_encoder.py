"""MiniLM through ONNX Runtime: the lean BERT forward exported once, optionally int8.

The graph is :class:`~thinkgym.tools._lean_bert.LeanBert` plus mean/CLS pooling
and L2 normalisation, traced on a padded batch (so the attention mask is part
of the graph) with dynamic batch and sequence axes. ``quantize=True`` applies
ONNX Runtime's dynamic quantisation (int8 weights, per output channel; uint8
activations scaled per call), which on this machine's AVX-512 VNNI cores beats
torch's dynamic int8 both in latency and in closeness to fp32 (see
``benchmarks/results/retrieval.json``).

The exported file is cached under ``<cache>/onnx/`` (``$THINKGYM_CACHE`` or
``~/.cache/thinkgym``), keyed by the model fingerprint and the onnxruntime
version, and written atomically; exporting takes a few seconds and needs the
``onnx`` package, serving needs only ``onnxruntime`` (``pip install
'thinkgym[onnx]'``). Imported only by :mod:`thinkgym.tools.encoders`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thinkgym.errors import DependencyNotInstalled

__all__ = ["OnnxEncoder", "onnx_available"]

log = logging.getLogger(__name__)

_SMALL_BATCH = 8  # up to this many texts run on the single-thread session


def onnx_available() -> bool:
    """onnxruntime and onnx (for the one-off export) are both importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyNotInstalled("onnxruntime is needed for the ONNX encoders",
                                     got="onnxruntime",
                                     fix="pip install 'thinkgym[onnx]' (onnxruntime, onnx), "
                                         "or use encoder='minilm-int8'") from exc
    return onnxruntime


def _export(direct: Any, target: Path, *, quantize: bool) -> None:
    """Trace ``direct`` (a fp32 DirectEncoder) to ONNX at ``target``, atomically."""
    import torch

    try:
        import onnx  # noqa: F401  (the torch exporter and the quantiser need it)
    except ImportError as exc:
        raise DependencyNotInstalled("exporting the ONNX encoder needs the onnx package",
                                     got="onnx", fix="pip install 'thinkgym[onnx]'") from exc

    class _Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = direct.model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids)
            if not isinstance(hidden, torch.Tensor):  # a non-BERT Hugging Face model
                hidden = hidden.last_hidden_state  # (B, T, D)
            return direct.pool(hidden, attention_mask)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.onnx")
    fp32 = tmp.with_name(f"{tmp.stem}.fp32.onnx") if quantize else tmp
    # A padded batch of two, so the traced graph keeps the attention-mask branch.
    sample = direct.tokenizer(["a longer sample sentence for tracing", "short"],
                              padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
            torch.onnx.export(_Graph().eval(), tuple(sample[n] for n in names), str(fp32),
                              input_names=names, output_names=["embedding"],
                              dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                            "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.getLogger("root").setLevel(logging.ERROR)  # "consider pre-processing"
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, target)
    finally:
        for f in {tmp, fp32}:
            f.unlink(missing_ok=True)


class OnnxEncoder:
    """Tokenizer -> ONNX Runtime session (forward + pooling + normalise).

    Two sessions share the model file: one on a single intra-op thread for a
    few texts (a query: see ``encoders._single_thread`` for why one thread), one
    on all cores for corpus batches. Neither spins its idle threads, which
    would otherwise compete with torch and FAISS for the cores.
    """

    def __init__(self, path: Path, fingerprint: str, *, quantize: bool,
                 cache_dir: Path | None = None) -> None:
        ort = _import_ort()
        from transformers import AutoTokenizer

        from thinkgym.tools.encoders import DirectEncoder, _read_json

        kind = "onnx-int8" if quantize else "onnx"
        self.id = f"minilm-{kind}-{fingerprint}"
        if cache_dir is None:
            from thinkgym.tools.retrieval import default_cache_dir

            cache_dir = default_cache_dir()
        self.file = cache_dir / "onnx" / f"{self.id}-ort{ort.__version__}.onnx"
        if not self.file.is_file():
            log.info("exporting %s to %s (once)", self.id, self.file)
            _export(DirectEncoder(path, quantize=False), self.file, quantize=quantize)
        # The same tokenizer settings as DirectEncoder; pooling is inside the graph.
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.max_length = int(_read_json(path / "sentence_bert_config.json")
                              .get("max_seq_length", 512))
        self.dim = int(_read_json(path / "config.json")["hidden_size"])
        self._single = self._session(ort, threads=1)
        self._multi = self._session(ort, threads=os.cpu_count() or 1)

    def _session(self, ort: Any, *, threads: int) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return ort.InferenceSession(str(self.file), opts, providers=["CPUExecutionProvider"])

    def _forward(self, texts: list[str], session: Any) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="np")
        feeds = {n: batch[n].astype(np.int64, copy=False)
                 for n in ("input_ids", "attention_mask", "token_type_ids")}
        return session.run(None, feeds)[0]

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if len(texts) <= _SMALL_BATCH:
            out[:] = self._forward(texts, self._single)
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")  # little padding
        starts = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encoding", unit="batch", total=len(starts))
        for s in starts:
            idx = order[s:s + batch_size]
            out[idx] = self._forward([texts[i] for i in idx], self._multi)
        return out
