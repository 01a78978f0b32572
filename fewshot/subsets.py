"""Which train rows each subset holds: every strategy of data.selection, per seed, as an order whose
prefixes are the subsets, and what each read of the labels to choose them (the manifest records it)."""
from __future__ import annotations

from .config import Config
from .errors import DataError
from .runs import RANDOM, subset_seeds
from .selection import LabelOracle, get as get_strategy, order as selection_order

def all_seeds(cfg: Config) -> list[int]:
    """The LLM's seeds first, then any extra seeds the baselines run (they share the subsets)."""
    return subset_seeds(cfg, RANDOM)


def select(cfg: Config, train: list[dict], train_emb=None) -> tuple[dict[tuple[str, int], list[int]], dict]:
    """(selection, seed) -> order of train rows (prefixes are the subsets), and what each read."""
    d = cfg.data
    emb = {} if train_emb is None else {"x": train_emb}

    def embed():
        if "x" not in emb:
            from .embeddings import embed as frozen
            emb["x"] = frozen(cfg, [r["text"] for r in train])
        return emb["x"]
    orders, record = {}, {}
    for sel in d.selection:
        for seed in subset_seeds(cfg, sel):
            oracle = LabelOracle([r["label"] for r in train])
            orders[(sel, seed)] = selection_order(sel, n_rows=len(train), sizes=d.sizes, seed=seed, oracle=oracle,
                                                  stratify=d.stratify, embed=embed)
            top = orders[(sel, seed)][:max(d.sizes)]
            outside = sorted(oracle.read - set(top)) if sel != RANDOM else []
            if outside:  # the oracle stops a leak as it happens; this says so if one ever got past it
                raise DataError(f"data.selection {sel}: read the labels of {len(outside)} row(s) outside its subsets")
            # what the strategy says it reads, where it read any label (stratified random reads all of them)
            record.setdefault(sel, {"reads": get_strategy(sel).reads if oracle.read else "no label",
                                    "seeds": [], "labels_read": {}})
            record[sel]["seeds"].append(seed)
            record[sel]["labels_read"][str(seed)] = len(oracle.read)
    return orders, record
