"""Text vectors -> discrete OPQ/PQ codes with faiss, exactly as VQ-Rec's ``pq.py``/``utils.py`` build them.

``index_factory(d, "OPQ32,IVF1,PQ32x8", METRIC_INNER_PRODUCT)`` (methods.md 4.1, 15): an OPQ
rotation, a dummy single-cell IVF (codes encode the residual to its one centre) and a PQ of 32
sub-vectors x 256 centroids. The index is trained on the *training* items only ("strict"),
those items are added, then every other item is added to the same trained index (no refit), as
``data/dataset.py`` does for downstream items. Codes are read back from the inverted list
(``invlists.get_codes(0)``, ids from ``get_ids(0)``), shifted by +1 (0 = padding) and offset by
``k * (M + 1)`` for sub-codebook ``k`` so one embedding table holds all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import ConfigError, MissingRequirementError


def factory_string(n_sub: int, n_bits: int) -> str:
    return f"OPQ{n_sub},IVF1,PQ{n_sub}x{n_bits}"


def check_width(width: int, n_sub: int, encoder: str | None) -> None:
    """The PQ splits the (rotated) vector into ``n_sub`` equal sub-vectors: the width must divide."""
    if width % n_sub:
        raise ConfigError(f"VQ-Rec: text encoder {encoder or '?'!r} gives {width}-d features, which the PQ "
                          f"({factory_string(n_sub, 8)}) cannot split: the width must be a multiple of {n_sub}")


@dataclass(frozen=True, eq=False)
class PQCodes:
    """Flat code ids per item (int64 [N, n_sub], sub-codebook k in ``k*(ksub+1)+1 .. k*(ksub+1)+ksub``).

    ``raw`` are faiss's own codes (0..ksub-1) for the mechanics tests; ``index`` is the trained
    faiss index (kept so tests can compare with its own reconstruction).
    """

    codes: np.ndarray
    raw: np.ndarray
    n_sub: int
    ksub: int
    index: object
    n_train: int

    @property
    def n_codes(self) -> int:
        """Rows of the code-embedding table: n_sub * (ksub + 1) (one padding slot per sub-codebook)."""
        return self.n_sub * (self.ksub + 1)


def read_invlist(index: object) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 [n, code_size], ids int64 [n]) of the single inverted list, in insertion order."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    inv = ivf.invlists
    n = inv.list_size(0)
    codes = faiss.rev_swig_ptr(inv.get_codes(0), n * inv.code_size).reshape(n, inv.code_size).copy()
    ids = faiss.rev_swig_ptr(inv.get_ids(0), n).astype(np.int64).copy()
    return codes, ids


def build_codes(feat: np.ndarray, train_mask: np.ndarray, n_sub: int = 32, n_bits: int = 8,
                threads: int = 1, opq_niter: int | None = None, polysemous: bool = True) -> PQCodes:
    """Train the OPQ+PQ index on ``feat[train_mask]``, add every item, return the offset codes.

    Training items are added first (as the authors' strict index holds them), then the others
    ("cold" items, never in training) get codes from the same trained index. ``opq_niter`` = None
    keeps faiss's OPQ default (50 alternations, as the authors ran it); tests lower it for speed.

    ``polysemous`` keeps the factory's polysemous training of the PQ (the authors' index did it):
    it only relabels each sub-codebook's centroids so that Hamming distances between codes track
    vector distances. VQ-Rec uses codes as embedding-table rows, so ``False`` gives the same
    quantisation under other labels -- and saves ~110 s on 7.7k x 384 vectors (1 thread).
    """
    import faiss

    if n_bits != 8:
        raise ConfigError(f"VQ-Rec reads one byte per sub-code from the inverted list: n_bits must be 8, got {n_bits}")
    x = np.ascontiguousarray(feat, dtype=np.float32)
    check_width(x.shape[1], n_sub, None)
    ksub = 1 << n_bits
    train_rows = np.flatnonzero(train_mask).astype(np.int64)
    if len(train_rows) < max(ksub, x.shape[1]):
        # faiss k-means needs >= ksub points; OPQ's rotation needs >= d (faiss 1.15.1 corrupts its heap and
        # aborts the process when trained on fewer points than dimensions): say so, the runner skips the run
        raise MissingRequirementError(
            f"VQ-Rec: {len(train_rows)} training items cannot train OPQ{n_sub} + PQ with {ksub} centroids per "
            f"sub-codebook on {x.shape[1]}-d features (needs >= {max(ksub, x.shape[1])} items)")
    faiss.omp_set_num_threads(max(1, int(threads)))
    index = faiss.index_factory(x.shape[1], factory_string(n_sub, n_bits), faiss.METRIC_INNER_PRODUCT)
    if opq_niter is not None:
        faiss.downcast_VectorTransform(index.chain.at(0)).niter = int(opq_niter)
    faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = bool(polysemous)
    index.train(x[train_rows])
    index.add_with_ids(x[train_rows], train_rows)
    cold_rows = np.flatnonzero(~np.asarray(train_mask, dtype=bool)).astype(np.int64)
    if len(cold_rows):
        index.add_with_ids(x[cold_rows], cold_rows)  # the trained index, no refit
    flat, ids = read_invlist(index)
    if flat.shape[1] != n_sub or len(ids) != len(x) or not np.array_equal(np.sort(ids), np.arange(len(x))):
        raise RuntimeError("faiss inverted list does not hold exactly one code per item")
    raw = np.empty((len(x), n_sub), dtype=np.int64)
    raw[ids] = flat.astype(np.int64)  # inverted-list row -> item row
    codes = raw + 1 + np.arange(n_sub, dtype=np.int64)[None, :] * (ksub + 1)
    return PQCodes(codes=codes, raw=raw, n_sub=n_sub, ksub=ksub, index=index, n_train=len(train_rows))


def decode(index: object, raw: np.ndarray) -> np.ndarray:
    """Reconstruct vectors from raw PQ codes by hand: centre + PQ centroids, rotated back (OPQ^T).

    Used by the tests to check that the codes read from the inverted list are the index's codes.
    """
    import faiss

    vt = faiss.downcast_VectorTransform(index.chain.at(0))
    rot = faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    pq = ivf.pq
    cents = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
    centre = faiss.rev_swig_ptr(faiss.downcast_index(ivf.quantizer).get_xb(), ivf.d).copy()
    y = cents[np.arange(pq.M)[None, :], raw].reshape(len(raw), -1) + centre[None, :]
    return y @ rot  # rot is orthonormal: x = A^T y, i.e. row-vector y @ A
