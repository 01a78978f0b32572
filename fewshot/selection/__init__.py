"""Which training rows to label: one module per strategy, one name in `data.selection`.

Every strategy returns an *order* of the train rows whose every prefix is the subset of that size,
so the subsets nest (16 inside 32) as the random ones always have. What a strategy may read is
explicit: texts and their frozen embeddings always; labels only through a `LabelOracle`, which
hands out the label of a row only once that row is bought (part of a prefix already chosen), and
records every row it was asked about. The data step writes what each order read into the manifest.

    random     today's seeded shuffle (stratified: reads every train label to balance classes)
    typical    label-free: TypiClust (Hacohen et al., ICML 2022) on the shipped encoder's embeddings
    uncertain  a typical start, then each next size by a cheap proxy trained on the bought rows only:
               breaking ties (small-text) over the rest, then a k-means diversity step
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FewshotError


class LabelLeak(FewshotError):
    """A strategy asked for the label of a row it had not bought."""


@dataclass
class LabelOracle:
    """The only way a strategy reads labels. `buy(rows)` marks rows as labelled (they are in the
    chosen prefix); `labels(rows)` answers only for bought rows and raises LabelLeak otherwise.
    `read` is every row whose label was handed out: the manifest records its size."""
    _labels: list
    bought: set = field(default_factory=set)
    read: set = field(default_factory=set)
    reads_all: bool = False  # a strategy that reads every label (stratified random) says so

    def buy(self, rows) -> None:
        self.bought.update(int(i) for i in rows)

    def labels(self, rows) -> list:
        rows = [int(i) for i in rows]
        leaked = [i for i in rows if i not in self.bought]
        if leaked:
            raise LabelLeak(f"selection read the label of {len(leaked)} row(s) it had not bought "
                            f"(first: train row {leaked[0] + 1})")
        self.read.update(rows)
        return [self._labels[i] for i in rows]

    def all_labels(self) -> list:
        """Every label: only for strategies that declare it (stratified random)."""
        self.reads_all = True
        self.read.update(range(len(self._labels)))
        return list(self._labels)


STRATEGIES = ("random", "typical", "uncertain")


def order(strategy: str, *, n_rows: int, sizes: list[int], seed: int, oracle: LabelOracle, stratify: bool = True,
          embed=None, length: int | None = None, start: list[int] = ()) -> list[int]:
    """The strategy's order of train rows, at least max(sizes) long (or `length`): its prefixes are
    the subsets. `embed()` returns the rows' frozen embeddings (computed only when a strategy needs
    them). `start`: rows already labelled, kept first (continuing an order for the labelling plan;
    random then shuffles the rest)."""
    from . import random_order, typical, uncertain
    sizes = sorted(sizes)
    length = max(length or 0, sizes[-1])
    if strategy == "random":
        return random_order.order(oracle, n_rows, seed, stratify, start)
    if strategy == "typical":
        return typical.order(embed(), sizes, seed, length, start)
    if strategy == "uncertain":
        return uncertain.order(embed(), sizes, seed, oracle, length, start)
    raise FewshotError(f"data.selection: unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
