from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from thinkgym.errors import ConfigError
from thinkgym.tools import (
    Document,
    Encoder,
    Passage,
    Retriever,
    RetrieverConfig,
    load_encoder,
    make_search_tool,
    write_corpus,
)
from thinkgym.tools.retrieval import default_cache_dir

DOCS = [
    Document("city", "Varnholt is a port city on the northern coast, famous for its shipyards."),
    Document("painter", "Lena Ostrova was a painter who made portraits of fishermen in oil."),
    Document("company", "The Orbis Company builds railway locomotives and steam engines."),
    Document("river", "The Dunmere river floods its valley every spring after the snow melts."),
    Document("novel", "Quiet Harbor is a novel about a lighthouse keeper and his daughter."),
    Document("food", "Kessel bread is baked with rye flour, caraway seeds and dark honey."),
]
QUERIES = {
    "which city has shipyards on the coast": "city",
    "who painted portraits of fishermen": "painter",
    "manufacturer of locomotives": "company",
    "river that floods in spring": "river",
    "book about a lighthouse keeper": "novel",
    "bread recipe with caraway and honey": "food",
}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("auto")  # the default: ONNX Runtime int8 if installed, else torch int8


def _config(tmp_path: Path, **kw: object) -> RetrieverConfig:
    return RetrieverConfig(cache_dir=str(tmp_path), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_each_query_finds_its_passage(tmp_path: Path, encoder: Encoder, index: str) -> None:
    r = Retriever(DOCS, _config(tmp_path, index=index), encoder=encoder)
    for query, gold in QUERIES.items():
        hits = r.search(query, k=3)
        assert hits[0].id == gold, (query, hits)
        assert hits[0].contents == next(d.contents for d in DOCS if d.id == gold)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert -1.0 <= scores[-1] <= scores[0] <= 1.0 + 1e-5


def test_batch_agrees_with_single_queries(tmp_path: Path, encoder: Encoder) -> None:
    # int8 dynamic quantisation scales activations per batch, so batched scores
    # differ slightly from single-query scores (documented); rankings agree here.
    r = Retriever(DOCS, _config(tmp_path), encoder=encoder)
    batch = r.search_batch(list(QUERIES), k=2)
    for query, hits in zip(QUERIES, batch, strict=True):
        single = r.search(query, k=2)
        assert hits[0].id == single[0].id == QUERIES[query]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single], abs=0.03)
    assert r.search_batch([], k=2) == []


def test_few_query_search_is_serial_and_restores_faiss_threads(
        tmp_path: Path, encoder: Encoder) -> None:
    import faiss

    r = Retriever(DOCS, _config(tmp_path), encoder=encoder)
    vectors = encoder.encode(list(QUERIES))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        single = r.search_vectors(vectors[:1], 2)  # serial path
        many = r.search_vectors(np.repeat(vectors[:1], 8, axis=0), 2)  # threaded path
        assert faiss.omp_get_max_threads() == 2
        np.testing.assert_array_equal(single[1][0], many[1][0])
    finally:
        faiss.omp_set_num_threads(before)


def test_fp32_batch_equals_single_queries(tmp_path: Path) -> None:
    r = Retriever(DOCS, _config(tmp_path, encoder="minilm"))
    batch = r.search_batch(list(QUERIES), k=3)
    for query, hits in zip(QUERIES, batch, strict=True):
        single = r.search(query, k=3)
        assert [h.id for h in hits] == [h.id for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single], abs=1e-4)


def test_cache_hit_on_second_build(tmp_path: Path, encoder: Encoder) -> None:
    first = Retriever(DOCS, _config(tmp_path), encoder=encoder)
    assert not first.cache_hit
    files = list((tmp_path / "retrieval").glob("*.npy"))
    assert len(files) == 1
    second = Retriever(DOCS, _config(tmp_path), encoder=encoder)
    assert second.cache_hit
    q = "who painted portraits of fishermen"
    assert second.search(q, k=3) == first.search(q, k=3)
    # A different corpus is a different key.
    changed = Retriever([*DOCS[:-1], Document("food", "Something else entirely.")],
                        _config(tmp_path), encoder=encoder)
    assert not changed.cache_hit


def test_index_cache_for_hnsw_and_ivf(tmp_path: Path, encoder: Encoder) -> None:
    for index in ("hnsw", "ivf"):
        assert not Retriever(DOCS, _config(tmp_path, index=index), encoder=encoder).cache_hit
        again = Retriever(DOCS, _config(tmp_path, index=index), encoder=encoder)
        assert again.cache_hit
        assert again.search("manufacturer of locomotives", k=1)[0].id == "company"
    assert len(list((tmp_path / "retrieval").glob("*.faiss"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape"])
def test_corrupt_cache_is_rebuilt(tmp_path: Path, encoder: Encoder, damage: str) -> None:
    Retriever(DOCS, _config(tmp_path), encoder=encoder)
    (emb,) = (tmp_path / "retrieval").glob("*.npy")
    if damage == "garbage":
        emb.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        emb.write_bytes(emb.read_bytes()[:-100])
    else:
        np.save(emb, np.zeros((2, 384), np.float32))
    r = Retriever(DOCS, _config(tmp_path), encoder=encoder)
    assert not r.cache_hit
    assert r.search("river that floods in spring", k=1)[0].id == "river"
    assert Retriever(DOCS, _config(tmp_path), encoder=encoder).cache_hit  # repaired


def test_no_cache_writes_nothing(tmp_path: Path, encoder: Encoder) -> None:
    Retriever(DOCS, _config(tmp_path, use_cache=False), encoder=encoder)
    assert not (tmp_path / "retrieval").exists()


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    encoder: Encoder) -> None:
    monkeypatch.setenv("THINKGYM_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    Retriever(DOCS[:3], encoder=encoder)
    assert list((tmp_path / "envcache" / "retrieval").glob("*.npy"))


def test_from_jsonl_and_search_tool(tmp_path: Path, encoder: Encoder) -> None:
    write_corpus(tmp_path / "c.jsonl", DOCS)
    r = Retriever.from_jsonl(tmp_path / "c.jsonl", _config(tmp_path), encoder=encoder)
    out = make_search_tool(r, k=2)(query="book about a lighthouse keeper")
    assert out.startswith("Doc 1 (id: novel): Quiet Harbor")
    assert out.count("\n") == 1


def test_k_larger_than_corpus_and_bad_inputs(tmp_path: Path, encoder: Encoder) -> None:
    r = Retriever(DOCS[:2], _config(tmp_path), encoder=encoder)
    assert len(r.search("anything", k=10)) == 2
    with pytest.raises(ConfigError, match="k must be"):
        r.search("x", k=0)
    with pytest.raises(ConfigError, match="list of strings"):
        r.search_batch("not a list", k=1)  # type: ignore[arg-type]


def test_accepts_dicts_and_duck_typed_documents(tmp_path: Path, encoder: Encoder) -> None:
    class P:
        def __init__(self, i: int, text: str) -> None:
            self.id, self.contents = i, text

    r = Retriever([{"id": "a", "contents": DOCS[0].contents}, P(2, DOCS[1].contents)],
                  _config(tmp_path), encoder=encoder)
    assert {h.id for h in r.search("painter", k=2)} == {"a", "2"}


def test_corpus_errors(tmp_path: Path, encoder: Encoder) -> None:
    with pytest.raises(ConfigError, match="empty"):
        Retriever([], _config(tmp_path), encoder=encoder)
    with pytest.raises(ConfigError, match="duplicate"):
        Retriever([DOCS[0], DOCS[0]], _config(tmp_path), encoder=encoder)
    with pytest.raises(ConfigError, match=r"documents\[1\]"):
        Retriever([DOCS[0], 42], _config(tmp_path), encoder=encoder)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"index": "lsh"}, "index"), ({"encoder": "bert-large"}, "encoder"),
    ({"ivf_nprobe": 0}, "ivf_nprobe"), ({"ivf_nlist": 0}, "ivf_nlist"),
    ({"batch_size": 0}, "batch_size"),
])
def test_config_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetrieverConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_encoders_are_normalised_and_int8_stays_close_to_fp32(encoder: Encoder) -> None:
    fp32 = load_encoder("minilm")
    assert load_encoder("minilm") is fp32  # loaded once per process
    texts = [d.contents for d in DOCS] + list(QUERIES)
    a, b = fp32.encode(texts, batch_size=4), encoder.encode(texts)
    assert a.shape == b.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert (a * b).sum(1).min() > 0.9
    assert fp32.id != encoder.id
    # Batching and padding do not change fp32 vectors.
    assert np.allclose(fp32.encode(texts[:1]), a[:1], atol=1e-5)


def test_default_config_uses_the_auto_encoder(tmp_path: Path, encoder: Encoder) -> None:
    r = Retriever(DOCS[:2], _config(tmp_path))
    assert r.config.encoder == "auto"
    assert r.encoder is encoder  # "auto" resolves to one cached encoder
    assert list((tmp_path / "retrieval").glob(f"*-{encoder.id}.npy"))


def test_passage_is_a_plain_value() -> None:
    assert Passage("a", "x", 0.5) == Passage("a", "x", 0.5)


@pytest.mark.slow
def test_direct_fp32_matches_sentence_transformers() -> None:
    texts = [d.contents for d in DOCS] + list(QUERIES)
    ref = load_encoder("minilm-st").encode(texts)
    ours = load_encoder("minilm").encode(texts)
    assert np.abs(ref - ours).max() < 1e-4


def test_importing_retrieval_stays_light() -> None:
    code = ("import thinkgym.tools.retrieval, thinkgym.tools.langchain, thinkgym.tools as t\n"
            "t.Retriever, t.calculator, t.from_langchain\n"
            "import json, sys; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    loaded = {m.split(".")[0] for m in json.loads(out)}
    heavy = {"torch", "faiss", "sentence_transformers", "transformers", "langchain_core"}
    assert not loaded & heavy, loaded & heavy
