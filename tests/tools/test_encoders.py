"""The fast encoders stay pinned to fp32: per-text cosine and top-k agreement.

Tolerances are the measured worst case over the benchmark's 500 queries
(``benchmarks/results/retrieval.json``, ``cos_to_fp32_min_*``) with a margin:
ONNX int8 >= 0.98 (measured min ~0.989), torch int8 >= 0.95 (~0.965), bf16 >=
0.999 (~0.9999), ONNX fp32 equal to torch fp32 within 1e-4 per component.
"""

from __future__ import annotations

import numpy as np
import pytest

from thinkgym.tools import Document, Encoder, load_encoder
from thinkgym.tools.encoders import ENCODER_NAMES, resolve_encoder_name

DOCS = [
    Document("city", "Varnholt is a port city on the northern coast, famous for its shipyards."),
    Document("painter", "Lena Ostrova was a painter who made portraits of fishermen in oil."),
    Document("company", "The Orbis Company builds railway locomotives and steam engines."),
    Document("river", "The Dunmere river floods its valley every spring after the snow melts."),
    Document("novel", "Quiet Harbor is a novel about a lighthouse keeper and his daughter."),
    Document("food", "Kessel bread is baked with rye flour, caraway seeds and dark honey."),
    Document("port", "Osmark's second port, Tillby, ships timber and salted fish abroad."),
    Document("poet", "Aren Falk wrote poems about the sea and was born in Varnholt in 1901."),
]
QUERIES = [
    "which city has shipyards on the coast", "who painted portraits of fishermen",
    "manufacturer of locomotives", "river that floods in spring",
    "book about a lighthouse keeper", "bread recipe with caraway and honey",
    "Which port ships timber?", "In which year was the poet from Varnholt born?",
]
TEXTS = [d.contents for d in DOCS] + QUERIES

# name -> minimum cosine similarity to fp32 of any single text
TOLERANCE = {"minilm-onnx-int8": 0.98, "minilm-int8": 0.95, "minilm-bf16": 0.999,
             "minilm-onnx": 0.9999}
# Mean top-3 overlap with fp32: the same set, except torch int8 (its coarser activations
# swap a near-tie third place for one query here).
TOP3_OVERLAP = {"minilm-int8": 0.9}
ONNX = ("minilm-onnx-int8", "minilm-onnx")


def _load(name: str) -> Encoder:
    if name in ONNX:
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    return load_encoder(name)


@pytest.fixture(scope="module")
def fp32() -> tuple[Encoder, np.ndarray, np.ndarray]:
    """The fp32 encoder, its query vectors (one at a time) and passage vectors (batched)."""
    enc = load_encoder("minilm")
    return enc, np.stack([enc.encode([q])[0] for q in QUERIES]), enc.encode(
        [d.contents for d in DOCS])


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_fast_encoder_vectors_stay_close_to_fp32(name: str, fp32: tuple) -> None:
    ref_enc, ref_q, ref_p = fp32
    enc = _load(name)
    queries = np.stack([enc.encode([q])[0] for q in QUERIES])  # as live searches are
    passages = enc.encode([d.contents for d in DOCS])  # one batch, as a corpus build is
    for got, ref in ((queries, ref_q), (passages, ref_p)):
        assert got.dtype == np.float32
        assert got.shape == ref.shape
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        cos = (got * ref).sum(1)
        assert cos.min() >= TOLERANCE[name], (name, cos.min())
    assert enc.id != ref_enc.id  # numerics are part of the cache key
    assert enc.dim == ref_enc.dim


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_fast_encoder_ranks_like_fp32(name: str, fp32: tuple) -> None:
    _, ref_q, ref_p = fp32
    enc = _load(name)
    queries = np.stack([enc.encode([q])[0] for q in QUERIES])
    passages = enc.encode([d.contents for d in DOCS])
    ref_rank = np.argsort(-(ref_q @ ref_p.T), axis=1)
    rank = np.argsort(-(queries @ passages.T), axis=1)
    np.testing.assert_array_equal(rank[:, 0], ref_rank[:, 0])  # same top-1 for every query
    assert np.arange(len(QUERIES)).tolist() == ref_rank[:, 0].tolist()  # and it is the gold
    overlap = np.mean([len(set(a) & set(b)) / 3 for a, b in zip(rank[:, :3], ref_rank[:, :3],
                                                                 strict=True)])
    assert overlap >= TOP3_OVERLAP.get(name, 1.0), (name, overlap)


def test_onnx_fp32_matches_torch_fp32(fp32: tuple) -> None:
    _, ref_q, ref_p = fp32
    enc = _load("minilm-onnx")
    np.testing.assert_allclose(np.stack([enc.encode([q])[0] for q in QUERIES]), ref_q,
                               atol=1e-4)
    np.testing.assert_allclose(enc.encode([d.contents for d in DOCS]), ref_p, atol=1e-4)


def test_onnx_int8_batched_and_padded_close_to_single() -> None:
    # Dynamic int8 scales activations per call, so batching moves a vector a little;
    # padding must not (the mask is in the exported graph).
    enc = _load("minilm-onnx-int8")
    single = np.stack([enc.encode([t])[0] for t in TEXTS])
    many = enc.encode(TEXTS * 2, batch_size=16)  # > 8 texts: the batched session
    assert (many[:len(TEXTS)] * single).sum(1).min() > 0.98
    np.testing.assert_array_equal(enc.encode([TEXTS[0]]), enc.encode([TEXTS[0]]))
    assert enc.encode([]).shape == (0, enc.dim)


def test_auto_picks_onnx_when_installed_else_torch_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    from thinkgym.tools import _onnx_encoder

    monkeypatch.setattr(_onnx_encoder, "onnx_available", lambda: False)
    assert resolve_encoder_name("auto") == "minilm-int8"
    monkeypatch.setattr(_onnx_encoder, "onnx_available", lambda: True)
    assert resolve_encoder_name("auto") == "minilm-onnx-int8"
    assert resolve_encoder_name("minilm") == "minilm"
    assert set(TOLERANCE) | {"auto", "minilm", "minilm-st"} == set(ENCODER_NAMES)
