"""Dense passage retrieval in-process: sentence embeddings + FAISS, cached on disk.

A :class:`Retriever` embeds a corpus once (L2-normalised vectors, so inner
product is cosine similarity), builds a FAISS index — exact ``"flat"`` inner
product by default, ``"ivf"`` (inverted lists) or ``"hnsw"`` (graph) for large
corpora — and answers ``search(query, k)`` with :class:`Passage` objects.

Embeddings (and IVF/HNSW indexes) are cached under
``<cache_dir>/retrieval/``, keyed by a hash of the corpus (ids and texts), the
encoder id (model fingerprint + numerics) and the index kind and parameters; the
cache directory is ``config.cache_dir``, else ``$THINKGYM_CACHE``, else
``~/.cache/thinkgym``. A second build of the same corpus loads from the cache
(``retriever.cache_hit`` is True). Writes are atomic, so concurrent builders
(vector-env workers) never read half a file.

Importing this module is cheap: FAISS and the encoder load on first use.

Example (loads the bundled MiniLM; a few seconds the first time)::

    from thinkgym.tools import Document, Retriever
    docs = [Document("a", "Varnholt is a port city in Osmark."),
            Document("b", "Lena Ostrova is a painter born in 1873.")]
    r = Retriever(docs)
    r.search("Which city is in Osmark?", k=1)[0].id     # 'a'
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from thinkgym.errors import ConfigError, DependencyNotInstalled
from thinkgym.tools.corpus import Document, load_corpus
from thinkgym.tools.encoders import ENCODER_NAMES, Encoder, load_encoder

__all__ = ["IndexKind", "Passage", "Retriever", "RetrieverConfig", "cache_paths", "corpus_hash",
           "default_cache_dir"]

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "ivf", "hnsw"]
_ADD_CHUNK = 16_384  # vectors added to FAISS at a time (bounds the extra copy in memory)
_IVF_TRAIN_PER_LIST = 64  # k-means training points per IVF list (FAISS advises 39 .. 256)
_SERIAL_QUERIES = 4  # up to this many queries, FAISS searches on the calling thread only
_FAISS_THREADS = threading.Lock()  # FAISS's thread count is process-global


def default_cache_dir() -> Path:
    """``$THINKGYM_CACHE`` if set, else ``~/.cache/thinkgym``."""
    env = os.environ.get("THINKGYM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thinkgym"


@dataclass(frozen=True)
class Passage:
    """One search hit."""

    id: str
    """The document id from the corpus."""
    contents: str
    """The passage text."""
    score: float
    """Cosine similarity to the query (higher is closer)."""


@dataclass(frozen=True)
class RetrieverConfig:
    """How a :class:`Retriever` embeds, indexes and caches its corpus."""

    encoder: str = "auto"
    """``"auto"``: ``"minilm-onnx-int8"`` (ONNX Runtime int8, fastest) if onnxruntime and
    onnx are installed, else ``"minilm-int8"`` (torch int8). Also ``"minilm-onnx"``,
    ``"minilm-bf16"``, ``"minilm"`` (fp32, same vectors as sentence-transformers) and
    ``"minilm-st"`` (sentence-transformers); see :mod:`thinkgym.tools.encoders`."""
    model_path: str | None = None
    """A sentence-transformers model directory; None: the bundled all-MiniLM-L6-v2."""
    index: IndexKind = "flat"
    """``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate, for 10^5+ passages;
    see ``benchmarks/results/retrieval.json`` for their recall and latency at 100k)."""
    ivf_nlist: int | None = None
    """IVF lists; None: ``4 * sqrt(N)`` capped so each list gets >= 39 training points."""
    ivf_nprobe: int = 32
    """IVF lists scanned per query (more: slower, higher recall)."""
    hnsw_m: int = 64
    """HNSW neighbours per node (64 rather than FAISS's usual 32: the near-duplicate
    template passages of the knowledge world need the denser graph for recall)."""
    hnsw_ef_construction: int = 200
    """HNSW candidate list size while building."""
    hnsw_ef_search: int = 128
    """HNSW candidate list size per query (more: slower, higher recall). At 100k
    passages 128 gives recall@5 0.94 (0.98 of exact search's top 5) at ~0.4 ms per
    single-threaded search on the 2-core machine; 64 gives 0.91 at ~0.25 ms
    (``benchmarks/results/retrieval.json``, ``efSearch`` sweep)."""
    cache_dir: str | None = None
    """Cache root; None: ``$THINKGYM_CACHE`` or ``~/.cache/thinkgym``."""
    use_cache: bool = True
    """Read and write the on-disk embedding/index cache."""
    batch_size: int = 64
    """Passages per encoder batch."""
    show_progress: bool | None = None
    """Progress bar while encoding; None: only for corpora over 2000 passages."""

    def __post_init__(self) -> None:
        if self.index not in ("flat", "ivf", "hnsw"):
            raise ConfigError("unknown index kind", field="index", got=self.index,
                              fix='use "flat", "ivf" or "hnsw"')
        if self.encoder not in ENCODER_NAMES:
            raise ConfigError("unknown encoder", field="encoder", got=self.encoder,
                              fix=f"use one of {', '.join(ENCODER_NAMES)}, or pass encoder= "
                                  "an Encoder object to Retriever")
        for name in ("ivf_nprobe", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search",
                     "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError("must be an integer >= 1", field=name, got=value,
                                  fix=f"use the default, {getattr(RetrieverConfig, name)}")
        if self.ivf_nlist is not None and (not isinstance(self.ivf_nlist, int)
                                           or self.ivf_nlist < 1):
            raise ConfigError("must be an integer >= 1 or None", field="ivf_nlist",
                              got=self.ivf_nlist, fix="leave it None for 4*sqrt(N)")

    def index_key(self, n: int) -> str:
        """The index kind and its build parameters, as used in cache file names."""
        if self.index == "ivf":
            return f"ivf{self.nlist_for(n)}"
        if self.index == "hnsw":
            return f"hnsw{self.hnsw_m}-{self.hnsw_ef_construction}"
        return "flat"

    def nlist_for(self, n: int) -> int:
        """IVF list count for a corpus of ``n`` passages."""
        if self.ivf_nlist is not None:
            return min(self.ivf_nlist, n)
        return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DependencyNotInstalled("FAISS is needed for retrieval", got="faiss",
                                     fix="pip install faiss-cpu") from exc
    return faiss


def _as_documents(documents: Iterable[Any]) -> list[Document]:
    docs: list[Document] = []
    for i, d in enumerate(documents):
        if isinstance(d, Document):
            docs.append(d)
        elif isinstance(d, dict) and "id" in d and "contents" in d:
            docs.append(Document(str(d["id"]), str(d["contents"])))
        elif hasattr(d, "id") and hasattr(d, "contents"):
            docs.append(Document(str(d.id), str(d.contents)))
        else:
            raise ConfigError(f"documents[{i}] is not a document", got=d,
                              fix="pass Document objects, {'id', 'contents'} dicts, or objects "
                                  "with .id and .contents")
    if not docs:
        raise ConfigError("the corpus is empty", field="documents", got=[],
                          fix="pass at least one document")
    return docs


def corpus_hash(docs: Sequence[Document]) -> str:
    """SHA-256 over the ids and texts, in order (the cache key of a corpus)."""
    h = hashlib.sha256()
    for d in docs:
        h.update(d.id.encode())
        h.update(b"\x00")
        h.update(d.contents.encode())
        h.update(b"\x01")
    return h.hexdigest()


def cache_paths(docs: Sequence[Document], encoder_id: str,
                config: RetrieverConfig) -> tuple[Path, Path]:
    """``(embeddings .npy, index .faiss)`` cache files of a corpus, encoder and config."""
    root = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    stem = f"{corpus_hash(docs)[:20]}-{encoder_id}"
    folder = root / "retrieval"
    return folder / f"{stem}.npy", folder / f"{stem}-{config.index_key(len(docs))}.faiss"


class Retriever:
    """Dense retrieval over ``documents``; see the module docstring.

    Args:
        documents: :class:`~thinkgym.tools.corpus.Document` objects (or
            ``{"id", "contents"}`` dicts, or objects with ``.id``/``.contents``).
        config: Encoder, index and cache settings.
        encoder: An :class:`~thinkgym.tools.encoders.Encoder` to use instead of
            ``config.encoder`` (its ``id`` keys the cache).

    Attributes:
        cache_hit: The embeddings (and the IVF/HNSW index) came from the cache.
        build_seconds: Wall-clock time of the build (encoding + indexing or loading).
    """

    def __init__(self, documents: Iterable[Any], config: RetrieverConfig | None = None, *,
                 encoder: Encoder | None = None) -> None:
        self.config = config or RetrieverConfig()
        self.documents = _as_documents(documents)
        self._ids = [d.id for d in self.documents]
        if len(set(self._ids)) != len(self._ids):
            dup = next(i for i in self._ids if self._ids.count(i) > 1)
            raise ConfigError("duplicate document id", field="documents", got=dup,
                              fix="give every document a unique id")
        self.encoder = encoder or load_encoder(self.config.encoder,
                                               model_path=self.config.model_path)
        start = time.perf_counter()
        self.cache_hit = False
        self.index = self._build()
        self.build_seconds = time.perf_counter() - start
        log.info("retriever ready: %d passages, %s index, %.1f s (cache %s)", len(self),
                 self.config.index, self.build_seconds, "hit" if self.cache_hit else "miss")

    @classmethod
    def from_jsonl(cls, path: str | Path, config: RetrieverConfig | None = None, *,
                   encoder: Encoder | None = None) -> Retriever:
        """A retriever over a ``{"id", "contents"}`` jsonl corpus file."""
        return cls(load_corpus(path), config, encoder=encoder)

    def __len__(self) -> int:
        return len(self.documents)

    # ------------------------------------------------------------------ build and cache

    def _build(self) -> Any:
        faiss = _faiss()
        emb_path, index_path = cache_paths(self.documents, self.encoder.id, self.config)
        use_cache = self.config.use_cache
        if use_cache and self.config.index != "flat" and index_path.is_file():
            index = self._read_index(faiss, index_path)
            if index is not None:
                self.cache_hit = True
                return index
        vectors: np.ndarray | _EmbeddingFile | None = (
            self._read_embeddings(emb_path) if use_cache else None)
        self.cache_hit = vectors is not None and self.config.index == "flat"
        if vectors is None:
            fresh = self._encode_corpus()
            if use_cache:
                _atomic_save(emb_path, lambda p: np.save(p, fresh), suffix=".npy")
            vectors = fresh
        index = self._new_index(faiss, vectors)
        if use_cache and self.config.index != "flat":
            _atomic_save(index_path, lambda p: faiss.write_index(index, str(p)), suffix=".faiss")
        return index

    def _encode_corpus(self) -> np.ndarray:
        show = self.config.show_progress
        if show is None:
            show = len(self) > 2000
        start = time.perf_counter()
        vectors = self.encoder.encode([d.contents for d in self.documents],
                                      batch_size=self.config.batch_size, show_progress=show)
        log.info("encoded %d passages in %.1f s", len(self), time.perf_counter() - start)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _read_embeddings(self, path: Path) -> _EmbeddingFile | None:
        if not path.is_file():
            return None
        try:
            vectors = _EmbeddingFile(path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable embedding cache %s: %s", path, exc)
            return None
        if vectors.shape != (len(self), self.encoder.dim):
            log.warning("ignoring embedding cache %s with shape %s", path, vectors.shape)
            return None
        return vectors

    def _read_index(self, faiss: Any, path: Path) -> Any:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            log.warning("ignoring unreadable index cache %s: %s", path, exc)
            return None
        if index.ntotal != len(self) or index.d != self.encoder.dim:
            log.warning("ignoring index cache %s (%d vectors)", path, index.ntotal)
            return None
        self._tune(index)
        return index

    def _new_index(self, faiss: Any, vectors: np.ndarray | _EmbeddingFile) -> Any:
        n, dim = vectors.shape
        cfg = self.config
        if cfg.index == "ivf":
            nlist = cfg.nlist_for(n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            size = min(n, _IVF_TRAIN_PER_LIST * nlist)
            rows = np.sort(np.random.default_rng(0).choice(n, size, replace=False))
            index.train(np.ascontiguousarray(vectors[rows]))
        elif cfg.index == "hnsw":
            index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
        else:
            index = faiss.IndexFlatIP(dim)
        for s in range(0, n, _ADD_CHUNK):
            index.add(np.ascontiguousarray(vectors[s:s + _ADD_CHUNK]))
        self._tune(index)
        return index

    def _tune(self, index: Any) -> None:
        if self.config.index == "ivf":
            index.nprobe = self.config.ivf_nprobe
        elif self.config.index == "hnsw":
            index.hnsw.efSearch = self.config.hnsw_ef_search

    # ------------------------------------------------------------------ search

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """The ``k`` passages closest to ``query``, best first."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        """``search`` for many queries at once (one encoder batch, one FAISS call)."""
        if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
            raise ConfigError("queries must be a list of strings", field="queries",
                              got=queries, fix='pass e.g. ["who founded X?"]')
        if not queries:
            return []
        vectors = self.encoder.encode(list(queries), batch_size=self.config.batch_size)
        scores, idx = self.search_vectors(vectors, k)
        return [[Passage(self._ids[j], self.documents[j].contents, float(s))
                 for s, j in zip(row_s, row_i, strict=True) if j >= 0]
                for row_s, row_i in zip(scores, idx, strict=True)]

    def search_vectors(self, vectors: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search alone: ``(scores, indices)``, each ``(len(vectors), k)``; -1 = none."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError("k must be an integer >= 1", field="k", got=k, fix="pass k=5")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.encoder.dim)
        if len(vectors) > _SERIAL_QUERIES:
            return self.index.search(vectors, min(k, len(self)))
        # A few queries gain nothing from FAISS's OpenMP threads, and waking them costs
        # more than the search: FAISS and torch ship separate OpenMP runtimes whose idle
        # threads spin, so on a small machine an encode followed by a threaded search
        # fight for the cores (single-query end-to-end time tripled here).
        faiss = _faiss()
        with _FAISS_THREADS:
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self.index.search(vectors, min(k, len(self)))
            finally:
                faiss.omp_set_num_threads(threads)


class _EmbeddingFile:
    """A cached ``.npy`` of float32 vectors, read by rows on demand.

    Plain reads instead of a memory map: pages read through the page cache are
    not charged to this process's RSS, so building an index from the cache costs
    the index plus one chunk, not the index plus the whole file.
    """

    def __init__(self, path: Path) -> None:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype != np.float32 or len(shape) != 2:
            raise ValueError(f"expected a C-order float32 matrix, got {dtype} {shape}")
        expected = self.offset + 4 * shape[0] * shape[1]
        if path.stat().st_size != expected:
            raise ValueError(f"truncated file ({path.stat().st_size} of {expected} bytes)")
        self.path, self.shape = path, (int(shape[0]), int(shape[1]))

    def _rows(self, start: int, stop: int) -> np.ndarray:
        dim = self.shape[1]
        with self.path.open("rb") as fh:
            fh.seek(self.offset + 4 * start * dim)
            return np.fromfile(fh, dtype=np.float32, count=(stop - start) * dim).reshape(-1, dim)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.shape[0])
            return self._rows(start, stop)
        rows = np.asarray(key)  # sorted row indices: gather them chunk by chunk
        parts = []
        for s in range(0, self.shape[0], _ADD_CHUNK):
            lo, hi = np.searchsorted(rows, [s, s + _ADD_CHUNK])
            if hi > lo:
                parts.append(self._rows(s, min(s + _ADD_CHUNK, self.shape[0]))[rows[lo:hi] - s])
        return np.concatenate(parts) if parts else np.empty((0, self.shape[1]), np.float32)


def _atomic_save(path: Path, write: Any, *, suffix: str) -> None:
    """Write via a temporary file in the same folder, then rename (atomic on POSIX)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # an unwritable cache must not break retrieval
        log.warning("could not write cache file %s: %s", path, exc)
