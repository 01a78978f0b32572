"""The typical strategy, label-free: TypiClust (Hacohen, Dekel, Weinshall, ICML 2022).

For each budget b (the subset sizes in order), k-means with b clusters on the rows' frozen
embeddings; then, until b rows are chosen, the largest cluster holding the fewest chosen rows gives
its most typical row not yet chosen (typicality: the inverse mean distance to its K nearest
neighbours inside the cluster). The rows chosen for smaller budgets stay: every prefix is a subset,
so the subsets nest. The seed is k-means' (its start), so several seeds give several orders."""
from __future__ import annotations

import numpy as np

from . import Strategy

K_NEIGHBOURS = 20     # TypiClust's K
MIN_CLUSTER = 5       # clusters smaller than this are taken only when no other has rows left


def typicality(x: np.ndarray, k: int = K_NEIGHBOURS) -> np.ndarray:
    """1 / mean Euclidean distance to the k nearest other rows of x (all rows of one cluster)."""
    m = len(x)
    if m == 1:
        return np.ones(1)
    sq = np.sum(x * x, axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))
    np.fill_diagonal(d, np.inf)
    k = min(k, m - 1)
    near = np.partition(d, k - 1, axis=1)[:, :k]
    return 1.0 / (near.mean(axis=1) + 1e-8)


def clusters(emb: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster id per row: k-means (mini-batch on large pools or many clusters, as TypiClust does)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    k = min(k, len(emb))
    if len(emb) > 20000 or k > 500:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=1)
    else:
        km = KMeans(n_clusters=k, random_state=seed, n_init=1)
    return km.fit_predict(emb)


def order(emb: np.ndarray, sizes: list[int], seed: int, length: int, start: list[int] = ()) -> list[int]:
    """The typical order, `length` rows long (at least max(sizes)); every size is a budget. `start`:
    rows already labelled, kept first (the labelling plan continues an order)."""
    emb = np.asarray(emb, dtype=np.float32)
    n = len(emb)
    length = min(length, n)
    chosen: list[int] = [int(i) for i in start]
    taken = np.zeros(n, bool)
    taken[chosen] = True
    for b in sorted({s for s in sizes if s <= length} | {length}):
        if b <= len(chosen):
            continue
        lab = clusters(emb, b, seed)
        members = {c: np.nonzero(lab == c)[0] for c in np.unique(lab)}
        ranked = {}  # cluster -> its rows, most typical first
        for c, rows in members.items():
            typ = typicality(emb[rows])
            ranked[c] = list(rows[np.argsort(-typ, kind="stable")])
        count = {c: int(taken[rows].sum()) for c, rows in members.items()}
        while len(chosen) < b:
            live = [c for c, rows in ranked.items() if any(not taken[i] for i in rows)]
            big = [c for c in live if len(members[c]) >= MIN_CLUSTER] or live
            c = min(big, key=lambda c: (count[c], -len(members[c]), c))
            i = next(i for i in ranked[c] if not taken[i])
            taken[i] = True
            chosen.append(int(i))
            count[c] += 1
    return chosen


STRATEGY = Strategy("typical", reads="no label", rank=10, colour="#1f77b4",
                    order=lambda c: order(c.embed(), c.sizes, c.seed, c.length, c.start))
