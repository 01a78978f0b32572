"""The random strategy: a seeded permutation (stratified by label if asked), the study's own."""
from __future__ import annotations

import random

from . import Strategy


def prefix_order(labels: list[str], seed: int, stratify: bool) -> list[int]:
    """A seeded permutation of row indices whose every prefix is a sample of the rows.

    Taking the first n for each size gives nested subsets (100 inside 500 for one seed). With
    stratify, the k-th of a class's n_c rows is placed at (k + u) / n_c, so every prefix holds
    each class in proportion (within one row)."""
    rng = random.Random(seed)
    idx = list(range(len(labels)))
    if not stratify:
        rng.shuffle(idx)
        return idx
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    keyed = []
    for lab in sorted(by_class):
        members = by_class[lab]
        rng.shuffle(members)
        n = len(members)
        keyed += [((k + rng.random()) / n, i) for k, i in enumerate(members)]
    keyed.sort()
    return [i for _, i in keyed]


def order(oracle, n_rows: int, seed: int, stratify: bool, start: list[int] = ()) -> list[int]:
    """Stratified: reads every label (said in the manifest); plain: reads none. With `start` (rows
    already labelled), those first and the rest in a seeded shuffle, reading no label."""
    if len(start):
        held = set(start)
        rest = [i for i in range(n_rows) if i not in held]
        random.Random(seed).shuffle(rest)
        return list(start) + rest
    labels = oracle.all_labels() if stratify else [""] * n_rows
    return prefix_order(labels, seed, stratify)


STRATEGY = Strategy("random", reads="every train label (to stratify)", rank=0, colour="#444444",
                    order=lambda c: order(c.oracle, c.n_rows, c.seed, c.stratify, c.start))
