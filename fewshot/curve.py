"""How many labelled rows each method needs: learning curves fitted by the estimator that the
curve benchmark chose (curve_models, curve_bench), with bootstrap intervals over evaluation rows
and training seeds, widened by the family error the benchmark measured; targets, crossovers,
which method is ahead at each measured size, what choosing rows saves, cost, and a backtest.

Every answer carries its extrapolation ratio (rows / largest measured) and what the benchmark
measured at that ratio on real learning curves; where 10% of such answers were off by more than
TRUST_P90 (or the ratio is past anything benchmarked), it is flagged "not enough data".

Numbers only: the words are `answer`'s, the plan `plan`'s, and the files the curve step's (`curve_step`)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import curve_models as cm
from .pools import ordered_map
from .results import CURVE_METHODS, ICL_METHODS, LLM, Point, load_points, load_results
from .selection import RANDOM, get as get_strategy, split_key, strategies

METRICS = ("accuracy", "macro_f1")
INTERVAL = 0.90       # every interval of this step: the coverage the benchmark calibrates


TRUST_P90 = 0.05      # an answer needs 90% of benchmarked answers at its ratio within this


MIN_SIZES = cm.MIN_SIZES


CALIBRATION = Path(__file__).with_name("curve_calibration.json")


def key(method: str, selection: str | None) -> str:
    """A curve's key: the method on random rows, method@strategy on rows a strategy chose."""
    return get_strategy(selection).key(method)


def base(k: str) -> str:
    return split_key(k)[0]


def selection_of(k: str) -> str:
    return split_key(k)[1]


def _order(k: str, ranks: dict) -> tuple:
    sel = selection_of(k)
    return (CURVE_METHODS.index(base(k)), ranks.get(sel, 99), sel)


def load_calibration(path: Path = CALIBRATION) -> dict:
    """The benchmark's verdict (rule, and per ratio the widening and errors); without the file the
    default rule, no widening, and every extrapolated answer 'not benchmarked'."""
    if path.exists():
        return json.loads(path.read_text())
    return {"rule": cm.DEFAULT_RULE, "ratios": {}, "source": "no benchmark (fewshot/curve_calibration.json missing)"}


def trust_at(cal: dict, ratio: float) -> dict | None:
    """How far to trust an answer `ratio` times the largest measured size. Inside the measured sizes
    (ratio <= 1) it is an interpolation: {"inside": True}. Past them, the benchmark's row at the
    smallest benchmarked ratio at or past it; None past every benchmarked ratio."""
    if ratio <= 1:
        return {"ratio": 1.0, "inside": True}
    rows = sorted((float(r), v) for r, v in cal.get("ratios", {}).items())
    for r, v in rows:
        if ratio <= r:
            return {"ratio": r, **v}
    return None


def trusted(t: dict | None) -> bool:
    """An answer is given as a number inside the data, or where 90% of benchmarked answers at its
    ratio were within TRUST_P90."""
    return bool(t and (t.get("inside") or t["p90_abs"] <= TRUST_P90))


def widen_at(cal: dict, ratio: float) -> float:
    if ratio <= 1:
        return 0.0  # inside the measured sizes the bootstrap sees the data itself
    t = trust_at(cal, ratio)
    return t["widen"] if t else 0.0


def _metric(pred, gold, k: int, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(pred == gold))
    f1s = []
    for c in range(k):
        tp = np.sum((pred == c) & (gold == c))
        fp, fn = np.sum((pred == c) & (gold != c)), np.sum((pred != c) & (gold == c))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def series(points: list[Point], k: int, metric: str, rows_idx=None, rng=None):
    """(ns, ys) over every run; with rows_idx the evaluation rows are resampled, with rng the seeds."""
    by_n: dict[int, list[Point]] = {}
    for p in points:
        by_n.setdefault(p.n, []).append(p)
    ns, ys = [], []
    for n, group in sorted(by_n.items()):
        chosen = group if rng is None else [group[i] for i in rng.integers(0, len(group), len(group))]
        for p in chosen:
            pr, go = (p.pred, p.gold) if rows_idx is None else (p.pred[rows_idx], p.gold[rows_idx])
            ns.append(n)
            ys.append(_metric(pr, go, k, metric))
    return ns, ys


@dataclass
class Fitted:
    """What `fit` found: `res` (plain numbers, written as labels_needed.json) and the curves behind
    them, which the plan draws from."""
    res: dict
    by_m: dict
    fits: dict
    boots: dict
    k: int
    cal: dict
    seed: int


def fit(objs_dir: str | Path, targets: list[float], n_boot: int = 200, seed: int = 0,
        calibration: dict | None = None, workers: int = 1, work=None) -> Fitted:
    """Every fit, rows-needed answer, crossover, comparison, saving, backtest and cost: the numbers
    (`Fitted.res`, what labels_needed.json holds) and the fitted curves a plan reads beside them.
    workers: processes fitting the (method, metric) series side by side (`fit_series`); the same
    numbers whatever the count, each bootstrap draw seeded by its index. work: see `cost_table`."""
    cal = calibration or load_calibration()
    rule = cal["rule"]
    results = load_results(objs_dir)
    points, labels = load_points(objs_dir, results)
    k = len(labels)
    ranks = {name: s.rank for name, s in strategies().items()}
    methods = sorted({p.method for p in points}, key=lambda m: _order(m, ranks))
    by_m = {m: [p for p in points if p.method == m] for m in methods}
    n_eval = len(points[0].gold) if points else 0
    rng = np.random.default_rng(seed)
    boot_rows = [rng.integers(0, n_eval, n_eval) for _ in range(n_boot)]  # shared: paired across methods
    out = {"targets": targets, "bootstrap": n_boot, "interval": INTERVAL, "rule": rule,
           "benchmark": {"source": cal.get("source"), "ratios": cal.get("ratios", {})}, "trust_p90": TRUST_P90,
           "fits": [], "labels_needed": [], "crossovers": [], "comparisons": [], "backtest": [], "cost": [],
           "seeds": {m: _seeds(by_m[m]) for m in methods}}
    fits, boots = {}, {}
    tasks = [(m, metric, by_m[m], k, boot_rows, seed, targets, cal) for metric in METRICS for m in methods]
    for (m, metric, *_), (rec, curve, bs, needed, bt) in zip(tasks, ordered_map(fit_series, tasks, workers)):
        out["fits"].append(rec)
        if curve is None:
            continue
        fits[(m, metric)], boots[(m, metric)] = curve, bs
        out["labels_needed"] += needed
        out["backtest"].append(bt)
    for metric in METRICS:  # the LLM against every other method: where its curve crosses theirs
        if (LLM, metric) not in fits:
            continue
        for m in methods:
            if m == LLM or (m, metric) not in fits or selection_of(m) != RANDOM:
                continue
            sizes = sorted({p.n for p in by_m[LLM]} | {p.n for p in by_m[m]})
            top = _top_ratio(cal)
            lo_n, hi_n = min(sizes), top * max(sizes)
            kind, n = cm.crossover(fits[(LLM, metric)], fits[(m, metric)], lo_n, hi_n)
            draws = [cm.crossover(a, b, lo_n, hi_n) for a, b in zip(boots[(LLM, metric)], boots[(m, metric)]) if a and b]
            lo, hi = _ci([x[1] if x[0] != "never" else math.inf for x in draws]) if draws else (None, None)
            ratio = n / max(sizes) if n else None
            out["crossovers"].append({"metric": metric, "llm": LLM, "other": m, "kind": kind,
                                      "rows": _int(n), "low": _int(lo), "high": _int(hi),
                                      "range": [int(lo_n), int(hi_n)], "ratio": ratio, "benchmarked_to": int(hi_n),
                                      "extrapolated": bool(n is not None and n > max(sizes)),
                                      "trust": trust_at(cal, ratio) if ratio else None})
    out["comparisons"] = compare({m: v for m, v in by_m.items() if selection_of(m) == RANDOM}, k, boot_rows, seed)
    # each method at its best measured selection (highest mean accuracy over the sizes it was measured at)
    best = best_selections(by_m, k)
    out["best_selection"] = best
    if any(v != RANDOM for v in best.values()):
        out["comparisons_best"] = compare({b: by_m[key(b, sel)] for b, sel in best.items()}, k, boot_rows, seed)
    out["savings"] = savings(fits, boots, out["labels_needed"], targets)
    out["cost"] = cost_table(points, out["labels_needed"], work)
    out["split"] = "/".join(sorted({str(r.get("split")) for r in results if r.get("split")}))
    icl = {(r["train_rows"], r.get("seed")): r["icl"] for r in results
           if r["method"] in ICL_METHODS and r.get("icl") and r.get("selection", RANDOM) == RANDOM}  # the free and constrained runs share their info
    out["icl"] = [{"rows": n, "seed": s, **{k: info.get(k) for k in ("k", "budget", "tokens", "budget_sets_k",
                                                                        "same_for")}}
                  for (n, s), info in sorted(icl.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]
    return Fitted(out, by_m, fits, boots, k, cal, seed)


def fit_series(task: tuple) -> tuple:
    """One method's curve on one metric: the fit and its bootstrap, the rows each target needs and the
    backtest; (record, curve, bootstrap curves, needed, backtest), curve None where it cannot be fitted."""
    m, metric, pts, k, boot_rows, seed, targets, cal = task
    rule, n_boot = cal["rule"], len(boot_rows)
    ns, ys = series(pts, k, metric)
    sizes = sorted(set(ns))
    curve = cm.fit_curve(ns, ys, rule)
    rec = {"method": m, "metric": metric, "sizes": sizes, "points": len(ns), "seeds": _seeds(pts)}
    if curve is None:
        rec["status"] = (f"not enough sizes ({len(sizes)} < {MIN_SIZES})" if len(sizes) < MIN_SIZES
                         else "fit did not converge")
        return rec, None, None, [], None
    bs = [cm.fit_curve(*series(pts, k, metric, boot_rows[i], np.random.default_rng(seed + 1 + i)), rule,
                       start=curve) for i in range(n_boot)]
    ok = [q for q in bs if q is not None]
    rec.update(status="ok", rule=rule, params=curve.params(), ceiling=curve.ceiling,
               ceiling_interval=_ci([q.ceiling for q in ok]), converged=f"{len(ok)}/{n_boot}",
               line=_line(curve, ok, min(sizes), max(sizes), cal))
    rec["falls"] = falls(ns, ys, len(pts[0].gold)) if metric == "accuracy" else None
    rec["shape"] = shape(ns, ys, len(pts[0].gold))
    needed = [_needed(m, metric, t, curve, bs, sizes, cal, rec["shape"]) for t in targets]
    return rec, curve, bs, needed, backtest(pts, k, metric, boot_rows, seed, rule, lambda r: widen_at(cal, r))


def _seeds(pts: list[Point]) -> int:
    """Training seeds behind a method's points: the fewest at any one size."""
    per: dict[int, set] = {}
    for p in pts:
        per.setdefault(p.n, set()).add(p.seed)
    return min((len(v) for v in per.values()), default=0)


def _top_ratio(cal: dict) -> float:
    """The farthest extrapolation ratio the curve benchmark measured (1 without a benchmark): how far
    past the data the figure draws, crossovers are sought and an interval's end is printed."""
    return max([float(r) for r in cal.get("ratios", {})] or [1.0])


def _line(curve, boots, lo_n: float, max_n: float, cal: dict) -> dict:
    """The fitted curve and its interval on a grid, out to the farthest benchmarked ratio: what the
    figure draws (past the largest size the band is widened as the benchmark says)."""
    top = _top_ratio(cal)
    xs = np.geomspace(lo_n, top * max_n, 80)
    ys = curve(xs)
    if boots:
        band = np.array([q(xs) for q in boots])
        lo, hi = np.percentile(band, [50 * (1 - INTERVAL), 100 - 50 * (1 - INTERVAL)], axis=0)
        w = np.array([widen_at(cal, x / max_n) for x in xs])
        lo, hi = lo - w, hi + w
    else:
        lo = hi = ys
    r = lambda v: [round(float(x), 5) for x in v]
    return {"x": r(xs), "y": r(ys), "low": r(lo), "high": r(hi), "largest": max_n}


def _needed(m: str, metric: str, t: float, curve, boots, sizes, cal: dict, bad_shape: dict | None = None) -> dict:
    """Rows to reach target t, its interval (bootstrap, widened by the benchmark's family error at
    the answer's ratio) and how far to trust it. A curve whose measured points fall or dip gets no
    number (bad_shape: what `shape` found)."""
    max_n = max(sizes)
    n_star = cm.rows_needed(curve, t)
    reachable = math.isfinite(n_star)
    ratio = n_star / max_n if reachable else None
    w = widen_at(cal, ratio) if reachable else 0.0
    lo = _ci([cm.rows_needed(q, t - w) if q else math.inf for q in boots])[0]
    hi = _ci([cm.rows_needed(q, t + w) if q else math.inf for q in boots])[1]
    trust = trust_at(cal, ratio) if reachable else None
    return {"method": m, "metric": metric, "target": t,
            "rows": int(math.ceil(n_star)) if reachable else None, "low": _int(lo), "high": _int(hi),
            "benchmarked_to": int(_top_ratio(cal) * max_n),
            "reachable": reachable, "ratio": ratio, "extrapolated": bool(reachable and n_star > max_n),
            "below_measured": bool(reachable and n_star < min(sizes)), "ceiling": curve.ceiling,
            "trust": trust, "enough_data": trusted(trust) and not bad_shape,
            "shape": bad_shape}


def compare(by_m: dict, k: int, boot_rows, seed: int) -> list[dict]:
    """At every size where the LLM and another method were both measured: each one's mean accuracy
    with its interval (rows and seeds resampled). Overlapping intervals: 'level', else who is ahead."""
    out = []
    if LLM not in by_m:
        return out
    llm_sizes = {p.n for p in by_m[LLM]}
    cache: dict[tuple, tuple] = {}

    def estimate(who: str, n: int) -> tuple:  # (mean, low, high) of one method at one size, computed once
        if (who, n) not in cache:
            group = [p for p in by_m[who] if p.n == n]
            mean = float(np.mean(series(group, k, "accuracy")[1]))
            draws = [float(np.mean(series(group, k, "accuracy", rows, np.random.default_rng(seed + 7 + i))[1]))
                     for i, rows in enumerate(boot_rows)]
            cache[(who, n)] = (mean, *_ci(draws)) if draws else (mean, mean, mean)
        return cache[(who, n)]

    for m, pts in by_m.items():
        if m == LLM or base(m) in ICL_METHODS:
            continue
        for n in sorted(llm_sizes & {p.n for p in pts}):
            (a, alo, ahi), (b, blo, bhi) = estimate(LLM, n), estimate(m, n)
            verdict = "level" if alo <= bhi and blo <= ahi else ("ahead" if a > b else "behind")
            out.append({"other": m, "rows": n, "llm": a, "llm_interval": [alo, ahi], "other_acc": b,
                        "other_interval": [blo, bhi], "llm_is": verdict})
    return out


def falls(ns, ys, n_eval: int) -> dict | None:
    """A series whose mean at the largest size is below its best size's mean by more than the 95%
    noise of a difference of two accuracies on n_eval rows: it gets worse with more data, so a
    (rising) power law cannot describe it and no rows-needed figure is given."""
    means = {n: float(np.mean([y for m, y in zip(ns, ys) if m == n])) for n in sorted(set(ns))}
    best_n = max(means, key=means.get)
    top, last = means[best_n], means[max(means)]
    noise = 1.96 * math.sqrt(2 * top * (1 - top) / max(n_eval, 1))
    if top - last <= noise:
        return None
    return {"best_rows": best_n, "best": round(top, 3), "largest_rows": max(means), "at_largest": round(last, 3)}


def shape(ns, ys, n_eval: int) -> dict | None:
    """Is the measured curve fit to extrapolate? None when it rises (within noise); otherwise what it
    does: 'falls' (its largest size below its best: a peak) or 'dips' (a size below the one before it by
    more than the 95% noise of a difference of two accuracies on n_eval rows, then rising again). LCDB
    1.1 finds ~14% of real curves ill-behaved; a power law fitted through one is a confident wrong number."""
    f = falls(ns, ys, n_eval)
    if f:
        return {"kind": "falls", **f, "reason": f"accuracy falls as rows grow ({f['best']:.2f} at {f['best_rows']} "
                                               f"rows, {f['at_largest']:.2f} at {f['largest_rows']})"}
    means = [(n, float(np.mean([y for m, y in zip(ns, ys) if m == n]))) for n in sorted(set(ns))]
    for (n0, a), (n1, b) in zip(means, means[1:]):
        noise = 1.96 * math.sqrt(2 * a * (1 - a) / max(n_eval, 1))
        if a - b > noise:
            return {"kind": "dips", "from_rows": n0, "to_rows": n1, "from": round(a, 3), "to": round(b, 3),
                    "reason": f"accuracy dips from {a:.2f} at {n0} rows to {b:.2f} at {n1} (more than test-row noise)"}
    return None


def best_selections(by_m: dict, k: int) -> dict:
    """Each method's best measured selection: the highest mean accuracy over the sizes every one of its
    selections was measured at (ties: random). Chosen on the split the runs were scored on."""
    out = {}
    for b in dict.fromkeys(base(m) for m in by_m):
        keys = [m for m in by_m if base(m) == b]
        common = set.intersection(*({p.n for p in by_m[m]} for m in keys))
        score = {m: float(np.mean([_metric(p.pred, p.gold, k, "accuracy") for p in by_m[m] if p.n in common]))
                 for m in keys if common}
        out[b] = selection_of(max(keys, key=lambda m: (score.get(m, -1), selection_of(m) == RANDOM))) if score else RANDOM
    return out


def savings(fits: dict, boots: dict, needed: list[dict], targets: list[float], metric: str = "accuracy") -> list[dict]:
    """For each method and strategy: the share of labels the strategy saves against random rows to reach
    each target, 1 - rows(chosen) / rows(random), with a paired bootstrap interval (the same resampled
    evaluation rows). Given only where both rows-needed answers stand (inside the measured sizes, a
    well-shaped curve); an interval holding 0 is 'no saving measurable'."""
    ans = {(r["method"], r["target"]): r for r in needed if r["metric"] == metric}
    out = []
    for m in (m for (m, mt) in fits if mt == metric and selection_of(m) != RANDOM):
        ref = base(m)
        if (ref, metric) not in fits:
            continue
        for t in targets:
            a, b = ans.get((ref, t)), ans.get((m, t))
            rec = {"method": ref, "selection": selection_of(m), "target": t, "metric": metric}
            if not a or not b:
                continue
            if a.get("below_measured") and b.get("below_measured"):
                out.append({**rec, "status": "both met at the smallest size", "saving": None})
                continue
            if not (a.get("enough_data") and b.get("enough_data")) or not (a["reachable"] and b["reachable"]):
                out.append({**rec, "status": "not enough data to say", "saving": None})
                continue
            draws = []
            for qa, qb in zip(boots[(ref, metric)], boots[(m, metric)]):
                if qa is None or qb is None:
                    continue
                na, nb = cm.rows_needed(qa, t), cm.rows_needed(qb, t)
                if math.isfinite(na) and math.isfinite(nb):
                    draws.append(1 - nb / na)
            saving = 1 - b["rows"] / a["rows"]
            lo, hi = _ci(draws)
            status = "saves" if lo is not None and lo > 0 else "costs" if hi is not None and hi < 0 else "no saving measurable"
            out.append({**rec, "status": status, "saving": saving, "low": lo, "high": hi,
                        "rows_random": a["rows"], "rows_chosen": b["rows"]})
    return out


def backtest(pts: list[Point], k: int, metric: str, boot_rows, seed: int, rule: str, widen, ratio: float | None = None
             ) -> dict:
    """Refit on the sizes up to largest/ratio (None: all but the largest) and predict the largest:
    the error, and whether the bootstrap interval covered the measured value before and after
    widening by widen(ratio). The report's backtest and the curve benchmark's study curves both."""
    m = pts[0].method
    largest = max(p.n for p in pts)
    rest = [p for p in pts if (p.n != largest if ratio is None else p.n <= largest / ratio)]
    rec = {"method": m, "metric": metric, "held_out": largest, "fit_sizes": len({q.n for q in rest}),
           "seeds": len({p.seed for p in pts})}
    curve = cm.fit_curve(*series(rest, k, metric), rule) if rest else None
    if curve is None:
        rec["status"] = f"not enough sizes below {largest} ({len({q.n for q in rest})} < {MIN_SIZES})"
        return rec
    measured = float(np.mean(series([q for q in pts if q.n == largest], k, metric)[1]))
    predicted = float(curve(largest))
    draws = []
    for i, rows in enumerate(boot_rows):
        q = cm.fit_curve(*series(rest, k, metric, rows, np.random.default_rng(seed + 10_000 + i)), rule, start=curve)
        if q is not None:
            draws.append(float(q(largest)))
    lo, hi = _ci(draws)
    w = widen(largest / max(q.n for q in rest))
    rec.update(status="ok", predicted=predicted, measured=measured, error=predicted - measured, low_raw=lo, high_raw=hi,
               covered_raw=bool(lo is not None and lo <= measured <= hi))
    if lo is not None:
        lo, hi = lo - w, hi + w
    rec.update(low=lo, high=hi, covered=bool(lo is not None and lo <= measured <= hi))
    return rec


def cost_table(points: list[Point], needed: list[dict], work=None) -> list[dict]:
    """Seconds per run (training + scoring) read at the rows each target needs: a straight line per
    method in the work a run does, work(method, n) (the rows its training passes; n where not given);
    where the runs measured one amount of work (a step floor: the encoder's runs up to 200 rows) or
    their line falls, time in proportion to the work instead: never less time for more work."""
    out = []
    work = work or (lambda m, n: float(n))
    for m in sorted({p.method for p in points}):
        pts = [p for p in points if p.method == m and p.seconds]
        if not pts:
            continue
        base = split_key(m)[0]
        ns = np.array([p.n for p in pts], float)
        xs = np.array([work(base, p.n) for p in pts], float)
        secs = np.array([p.seconds for p in pts], float)
        slope, icpt = np.polyfit(xs, secs, 1) if len(set(xs)) > 1 else (0.0, 0.0)
        if slope <= 0:  # one amount of work measured, or noise on it: time in proportion to the work
            slope, icpt = float(secs.mean() / xs.mean()), 0.0
        dev = sorted({p.device for p in pts})
        for r in needed:
            if r["method"] == m and r["metric"] == "accuracy" and r["rows"]:
                out.append({"method": m, "target": r["target"], "rows": r["rows"], "device": "/".join(dev),
                            "seconds": round(max(0.0, icpt + slope * work(base, r["rows"])), 1)})
        out.append({"method": m, "target": None, "rows": None, "device": "/".join(dev),
                    "seconds_per_run": {int(n): round(float(secs[ns == n].mean()), 1) for n in sorted(set(ns))}})
    return out


def _ci(xs):
    """Percentile interval (INTERVAL); an infinite draw (target not reached) makes an unbounded end."""
    xs = np.array([x for x in xs if x is not None], float)
    if not len(xs):
        return None, None
    big = 1e15
    lo, hi = np.percentile(np.minimum(xs, big), [50 * (1 - INTERVAL), 100 - 50 * (1 - INTERVAL)])
    return (math.inf if lo >= big else float(lo)), (math.inf if hi >= big else float(hi))


def _int(x):
    if x is None:
        return None
    return None if not math.isfinite(x) else int(math.ceil(x))
