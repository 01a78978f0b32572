"""Which training rows to label: one module per strategy, one name in `data.selection`.

Every strategy returns an *order* of the train rows whose every prefix is the subset of that size,
so the subsets nest (16 inside 32) as the random ones always have. What a strategy may read is
explicit: texts and their frozen embeddings always; labels only through a `LabelOracle`, which
hands out the label of a row only once that row is bought (part of a prefix already chosen), and
records every row it was asked about. The data step writes what each order read into the manifest.

Each strategy is one module that sets `STRATEGY` (a `Strategy`: name, what it reads, display rank,
colour, order function); nothing else lists them:

    random_order  random: today's seeded shuffle (stratified: reads every train label to balance classes)
    typical       label-free: TypiClust (Hacohen et al., ICML 2022) on the shipped encoder's embeddings
    uncertain     a typical start, then each next size by a cheap proxy trained on the bought rows only:
                  breaking ties (small-text) over the rest, then a k-means diversity step
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

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


RANDOM = "random"


@dataclass(frozen=True)
class Context:
    """What a strategy is given. `embed()` returns the rows' frozen embeddings (computed only when
    called); `oracle` hands out bought rows' labels; `start`: rows already labelled, to keep first."""
    n_rows: int
    sizes: list
    seed: int
    oracle: LabelOracle
    stratify: bool
    embed: Callable
    length: int
    start: list


@dataclass(frozen=True)
class Strategy:
    """One selection's identity, used everywhere it shows: the config value and run-name suffix (`name`),
    what it reads of the labels (the manifest), its place among the others and its colour in every
    figure, and its order function. A strategy is one module in this package that sets `STRATEGY`."""
    name: str
    reads: str
    rank: int
    colour: str
    order: Callable[[Context], list]

    @property
    def suffix(self) -> str:
        """In run names: llm_train_64_typical (random rows keep the original study's names)."""
        return "" if self.name == RANDOM else f"_{self.name}"

    def key(self, method: str) -> str:
        """A curve's key: the method on random rows, method@strategy on rows a strategy chose."""
        return method if self.name == RANDOM else f"{method}@{self.name}"

    def display(self, method_name: str) -> str:
        return method_name if self.name == RANDOM else f"{method_name}, {self.name} rows"


_FOUND: dict[tuple, dict] = {}  # the strategies found, by the package's module names when they were read


def strategies() -> dict[str, Strategy]:
    """Every strategy module of this package, in display order. Read again whenever the package's
    modules change, so a module added while running counts."""
    import importlib
    import pkgutil
    names = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__)))
    if names not in _FOUND:
        importlib.invalidate_caches()
        found = {}
        for name in names:
            st = getattr(importlib.import_module(f"{__name__}.{name}"), "STRATEGY", None)
            if isinstance(st, Strategy):
                if st.name in found:
                    raise FewshotError(f"two selection modules name the strategy {st.name!r}")
                found[st.name] = st
        _FOUND.clear()
        _FOUND[names] = dict(sorted(found.items(), key=lambda kv: (kv[1].rank, kv[0])))
    return dict(_FOUND[names])


def get(name: str | None) -> Strategy:
    """The strategy of this name (None: random rows)."""
    known = strategies()
    if (name or RANDOM) not in known:
        raise FewshotError(f"data.selection: unknown strategy {name!r} (known: {', '.join(known)})")
    return known[name or RANDOM]


def split_key(k: str) -> tuple[str, str]:
    """A curve key back to (method, strategy name): the inverse of Strategy.key."""
    method, _, sel = k.partition("@")
    return method, sel or RANDOM


def order(strategy: str, *, n_rows: int, sizes: list[int], seed: int, oracle: LabelOracle, stratify: bool = True,
          embed=None, length: int | None = None, start: list[int] = ()) -> list[int]:
    """The strategy's order of train rows, at least max(sizes) long (or `length`): its prefixes are
    the subsets. `embed()` returns the rows' frozen embeddings (computed only when a strategy needs
    them). `start`: rows already labelled, kept first (continuing an order for the labelling plan;
    random then shuffles the rest)."""
    sizes = sorted(sizes)
    return get(strategy).order(Context(n_rows, sizes, seed, oracle, stratify, embed, max(length or 0, sizes[-1]),
                                       list(start)))
