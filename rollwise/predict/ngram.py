"""Item response with a text prior: prompts with similar text start from similar difficulties.

The `irt` predictor (rollwise.predict.irt) gives a never-seen prompt the learned difficulty offset of
its *cell* (group x length bucket): all it knows of the prompt is its metadata and its length. This
predictor adds what its text says. Each prompt is a tf-idf vector of hashed character n-grams
(`features.hashed_ngrams`, nothing downloaded; idf = log(N / df), so n-grams every prompt shares weigh
nothing), rows scaled to unit length, and a never-seen prompt's difficulty offset is a kernel
regression on the prompts seen so far:

    offset_i = (cell_sum_c + w * x_i . S) / (cell_count_c + cell_shrink + w * x_i . C)
    S = sum over seen j of x_j * r_j,   C = sum over seen j of x_j,   r_j = mu_j - prior_offset_j

so prompt j counts with weight [same cell] + w * cos(i, j): the cell's prompts as in `irt`, plus every
seen prompt in proportion to its text similarity (`text_weight` w; 0 gives `irt` exactly). S and C are
kept up to date in O(n-grams of the observed prompts) per step, and a prediction costs one sparse row
product per never-seen prompt, so the pool's size costs only memory. Seen prompts are predicted from
their own posterior as in `irt` (their text entered it as the prior of their first observation).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from rollwise.predict.base import load_arrays
from rollwise.predict.irt import IRTPredictor


def tfidf_rows(indptr: np.ndarray, indices: np.ndarray, buckets: int) -> sparse.csr_matrix:
    """Unit-length tf-idf rows (CSR, float64) from hashed n-gram rows; all-zero rows stay zero.

    >>> x = tfidf_rows(np.array([0, 2, 3, 4]), np.array([0, 1, 0, 2]), 3)
    >>> [round(float(v), 3) for v in x.toarray()[0]]   # bucket 0 is in 2 of 3 prompts, bucket 1 in 1
    [0.346, 0.938, 0.0]
    """
    n = len(indptr) - 1
    x = sparse.csr_matrix((np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                          shape=(n, buckets))
    x.sum_duplicates()  # term counts
    df = np.bincount(x.indices, minlength=buckets)
    idf = np.log(max(n, 1) / np.maximum(df, 1))
    x = sparse.csr_matrix(x @ sparse.diags(idf))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ x
    return sparse.csr_matrix(x)


class NgramPredictor(IRTPredictor):
    """`irt` whose never-seen prompts take their difficulty from prompts of similar text (module docstring).

    >>> from rollwise.predict.features import hashed_ngrams
    >>> indptr, idx = hashed_ngrams(["add 1 and 2", "add 1 and 3", "sort z y x"], n=3, buckets=256)
    >>> p = NgramPredictor(np.zeros(3, dtype=np.int64), tfidf_rows(indptr, idx, 256), text_weight=50.0)
    >>> p.observe(1, np.array([0]), np.array([0]), np.array([8]))   # prompt 0 is harder than its group thought
    >>> bool(p.mean(np.array([1]))[0] < p.mean(np.array([2]))[0])  # its look-alike moves with it, more than the other
    True
    """

    name = "ngram"

    def __init__(self, groups: np.ndarray, text: sparse.csr_matrix, cells: np.ndarray | None = None,
                 text_weight: float = 1.0, **irt_options) -> None:
        super().__init__(groups, cells, **irt_options)
        if text.shape[0] != len(self.groups):
            raise ValueError(f"ngram predictor: {text.shape[0]} text rows for {len(self.groups)} prompts")
        if not text_weight >= 0:
            raise ValueError(f"ngram predictor: text_weight must be non-negative, got {text_weight}")
        self.text, self.text_weight = sparse.csr_matrix(text, dtype=np.float64), float(text_weight)
        self.text_sum = np.zeros(text.shape[1])    # S: seen prompts' residual difficulty, per n-gram
        self.text_count = np.zeros(text.shape[1])  # C: seen prompts' weight, per n-gram

    def _offset_parts(self, ids) -> tuple[np.ndarray, np.ndarray]:
        numerator, denominator = super()._offset_parts(ids)
        rows = self.text[ids]
        return (numerator + self.text_weight * (rows @ self.text_sum),
                denominator + self.text_weight * (rows @ self.text_count))

    def _add_evidence(self, ids, residual_change, newly_seen) -> None:
        super()._add_evidence(ids, residual_change, newly_seen)
        rows_t = self.text[ids].T
        self.text_sum += rows_t @ residual_change
        self.text_count += rows_t @ newly_seen

    def state_dict(self) -> dict:
        return {**super().state_dict(), "text_sum": self.text_sum.copy(), "text_count": self.text_count.copy()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        shape = (self.text.shape[1],)
        load_arrays(self, state, {"text_sum": shape, "text_count": shape})
