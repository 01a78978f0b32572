"""CPU-bound work spread over worker processes, results in input order: the curve step's fits and
the curve and plan benchmarks' thousands of small fits. One home, so every caller gets the same
order, the same fallback to this process for one worker, and the same fresh-interpreter choice."""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable


def ordered_map(fn: Callable[[Any], Any], tasks: list, workers: int, fresh: bool = True) -> list:
    """[fn(t) for t in tasks], in that many worker processes where more than one is asked and there
    is more than one task. fresh: spawned interpreters (no threads or state inherited from a fork)."""
    workers = min(workers, len(tasks))
    if workers < 2:
        return [fn(t) for t in tasks]
    ctx = mp.get_context("spawn") if fresh else None
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return list(pool.map(fn, tasks))


def chunked_map(fn_many: Callable[[tuple], list], items: list, workers: int, *args) -> list:
    """fn_many((chunk, *args)) over interleaved chunks of `items` (eight per worker, so long and short
    items mix), flattened chunk after chunk; forked workers (fn_many's module is already imported)."""
    n = max(1, workers) * 8
    chunks = [items[i::n] for i in range(n)]
    return [r for part in ordered_map(fn_many, [(ch, *args) for ch in chunks], workers, fresh=False) for r in part]
