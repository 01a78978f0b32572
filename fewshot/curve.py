"""How many labelled rows each method needs: learning curves fitted with the inverse power law
acc(n) = a - b * n^(-c) (Figueroa et al., BMC Med Inform Decis Mak 12:8, 2012: weighted non-linear
least squares, larger sizes weighted more), with bootstrap intervals, targets, crossovers, cost,
and a backtest that says whether to trust the extrapolation.

Input: every scored run in objs/ with its per-row predictions (objs/<run>/predictions.jsonl).
Output: report/labels_needed.json and a printed table (`python -m fewshot curve --config ...`)."""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fileio import atomic_write_json, read_jsonl
from .results import METHOD_NAMES, load_results

METRICS = ("accuracy", "macro_f1")
CURVE_METHODS = ("llm_lora", "llm_icl", "tfidf", "encoder", "setfit")
LLM = "llm_lora"
EXTRAPOLATION = 4.0   # past this multiple of the largest measured size, an answer is marked extrapolated
MIN_SIZES = 3
BEYOND = math.log(1e12)  # more rows than any labelled set: counted as not reached


def power_law(n, a, b, c):
    return a - b * np.power(n, -c)


def fit(ns, ys, start=None) -> tuple[float, float, float] | None:
    """Bounded weighted least squares (0<=a<=1, b>=0, c>0); weight of a point grows with its n
    (sigma ~ 1/sqrt(n)). None when there are fewer than 3 distinct sizes or it does not converge.
    A few starts (the surface is flat along the b-c ridge), or one: `start`, e.g. the fit that a
    bootstrap resample perturbs."""
    from scipy.optimize import curve_fit
    ns, ys = np.asarray(ns, float), np.asarray(ys, float)
    if len(np.unique(ns)) < MIN_SIZES:
        return None
    best = None
    starts = [start] if start is not None else [
        [min(1.0, ys.max() + 0.05), max(1e-3, (ys.max() + 0.05 - ys.min()) * ns.min() ** c0), c0]
        for c0 in (0.3, 0.7, 1.5)]
    for p0 in starts:
        p0 = [min(1.0, max(0.0, p0[0])), max(0.0, p0[1]), min(5.0, max(1e-3, p0[2]))]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(power_law, ns, ys, p0=p0, sigma=1 / np.sqrt(ns / ns.max()),
                                 bounds=([0, 0, 1e-3], [1, np.inf, 5]), maxfev=2000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((power_law(ns, *p) - ys) ** 2 * ns / ns.max()))
        if best is None or sse < best[0]:
            best = (sse, tuple(float(x) for x in p))
    return best[1] if best else None


def rows_needed(p, target: float) -> float:
    """Smallest n with fitted metric >= target; inf when the target is at or above the ceiling a."""
    a, b, c = p
    if target >= a:
        return math.inf
    if b <= 0:
        return 1.0
    log_n = -math.log((a - target) / b) / c  # in logs: a flat fit (tiny c) needs astronomically many rows
    return math.inf if log_n > BEYOND else max(1.0, math.exp(log_n))


def crossover(p_llm, p_other, lo: float, hi: float) -> tuple[str, float | None]:
    """('from the start'|'at'|'never', n): where the LLM's curve first rises above the other's in [lo, hi]."""
    grid = np.geomspace(lo, hi, 400)
    diff = power_law(grid, *p_llm) - power_law(grid, *p_other)
    if diff[0] > 0:
        return "from the start", float(lo)
    above = np.nonzero(diff > 0)[0]
    if not len(above):
        return "never", None
    return "at", float(grid[above[0]])


# ---------------------------------------------------------------- the runs, as per-row outcomes

@dataclass
class Point:
    method: str
    n: int
    seed: int | None
    pred: np.ndarray     # label index per evaluation row, -1 = invalid answer
    gold: np.ndarray
    seconds: float | None
    device: str


def load_points(objs_dir: str | Path) -> tuple[list[Point], list[str]]:
    pts, labels = [], []
    for r in load_results(objs_dir):
        if r["method"] not in CURVE_METHODS or not r.get("train_rows"):
            continue
        rows = {x["i"]: x for x in read_jsonl(Path(objs_dir) / r["name"] / "predictions.jsonl")}
        if len(rows) < r["n_eval"]:
            continue  # no per-row predictions (an older run): it cannot be resampled
        labels = r["metrics"]["labels"]
        idx = {lab: i for i, lab in enumerate(labels)}
        pred = np.array([idx.get(rows[i]["pred"], -1) if rows[i]["pred"] is not None else -1 for i in range(r["n_eval"])])
        gold = np.array([idx[rows[i]["label"]] for i in range(r["n_eval"])])
        sc = r.get("scoring") or {}
        secs = [x for x in (r.get("train_seconds"), r.get("seconds"), sc.get("seconds")) if x]
        train_dev = r.get("train_device") or sc.get("device") or "cpu"
        score_dev = sc.get("device") or train_dev  # the LLM may train on a GPU and be scored on a CPU
        pts.append(Point(r["method"], int(r["train_rows"]), r.get("seed"), pred, gold, sum(secs) if secs else None,
                         train_dev if score_dev == train_dev else f"{train_dev} train + {score_dev} score"))
    return pts, labels


def _metric(pred, gold, k: int, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(pred == gold))
    f1s = []
    for c in range(k):
        tp = np.sum((pred == c) & (gold == c))
        fp, fn = np.sum((pred == c) & (gold != c)), np.sum((pred != c) & (gold == c))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def _series(points: list[Point], k: int, metric: str, rows_idx=None, rng=None):
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


# ---------------------------------------------------------------- the analysis

def analyse(objs_dir: str | Path, targets: list[float], n_boot: int = 200, seed: int = 0) -> dict:
    points, labels = load_points(objs_dir)
    k = len(labels)
    methods = [m for m in CURVE_METHODS if any(p.method == m for p in points)]
    by_m = {m: [p for p in points if p.method == m] for m in methods}
    n_eval = len(points[0].gold) if points else 0
    rng = np.random.default_rng(seed)
    boot_rows = [rng.integers(0, n_eval, n_eval) for _ in range(n_boot)]  # shared: paired across methods
    out = {"targets": targets, "bootstrap": n_boot, "fits": [], "labels_needed": [], "crossovers": [],
           "backtest": [], "cost": []}
    fits, boots = {}, {}
    for metric in METRICS:
        for m in methods:
            pts = by_m[m]
            ns, ys = _series(pts, k, metric)
            sizes = sorted(set(ns))
            p = fit(ns, ys)
            rec = {"method": m, "metric": metric, "sizes": sizes, "points": len(ns)}
            if p is None:
                rec["status"] = (f"not enough sizes ({len(sizes)} < {MIN_SIZES})" if len(sizes) < MIN_SIZES
                                 else "fit did not converge")
                out["fits"].append(rec)
                continue
            bs = []
            for i in range(n_boot):
                q = fit(*_series(pts, k, metric, boot_rows[i], np.random.default_rng(seed + 1 + i)), start=p)
                bs.append(q)
            fits[(m, metric)], boots[(m, metric)] = p, bs
            ok = [q for q in bs if q is not None]
            rec.update(status="ok", a=p[0], b=p[1], c=p[2], a_ci95=_ci([q[0] for q in ok]),
                       b_ci95=_ci([q[1] for q in ok]), c_ci95=_ci([q[2] for q in ok]),
                       converged=f"{len(ok)}/{n_boot}", boot=[[round(x, 6) for x in q] for q in ok])
            rec["falls"] = falls(ns, ys, len(pts[0].gold)) if metric == "accuracy" else None
            out["fits"].append(rec)
            max_n = max(sizes)
            for t in targets:
                n_star = rows_needed(p, t)
                draws = [rows_needed(q, t) if q else math.inf for q in bs]
                lo, hi = _ci(draws)
                reachable = math.isfinite(n_star)
                out["labels_needed"].append({
                    "method": m, "metric": metric, "target": t,
                    "rows": int(math.ceil(n_star)) if reachable else None,
                    "low": _int(lo), "high": _int(hi), "reachable": reachable,
                    "extrapolated": bool(reachable and n_star > EXTRAPOLATION * max_n),
                    "below_measured": bool(reachable and n_star < min(sizes)),
                    "ceiling": p[0]})
            out["backtest"].append(backtest(pts, k, metric, boot_rows, seed))
    # crossovers of the LLM against every other method, on each metric
    for metric in METRICS:
        if (LLM, metric) not in fits:
            continue
        for m in methods:
            if m == LLM or (m, metric) not in fits:
                continue
            sizes = sorted({p.n for p in by_m[LLM]} | {p.n for p in by_m[m]})
            lo_n, hi_n = min(sizes), EXTRAPOLATION * max(sizes)
            kind, n = crossover(fits[(LLM, metric)], fits[(m, metric)], lo_n, hi_n)
            draws = [crossover(a, b, lo_n, hi_n) for a, b in zip(boots[(LLM, metric)], boots[(m, metric)]) if a and b]
            ns = [x[1] if x[0] != "never" else math.inf for x in draws]
            lo, hi = _ci(ns) if ns else (None, None)
            out["crossovers"].append({"metric": metric, "llm": LLM, "other": m, "kind": kind,
                                      "rows": _int(n), "low": _int(lo), "high": _int(hi),
                                      "range": [int(lo_n), int(hi_n)],
                                      "extrapolated": bool(n is not None and n > max(sizes))})
    out["cost"] = cost_table(points, out["labels_needed"])
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


def backtest(pts: list[Point], k: int, metric: str, boot_rows, seed: int) -> dict:
    """Refit without the largest size and predict it: error, and whether the interval covered it."""
    m = pts[0].method
    largest = max(p.n for p in pts)
    rest = [p for p in pts if p.n != largest]
    rec = {"method": m, "metric": metric, "held_out": largest}
    p = fit(*_series(rest, k, metric))
    if p is None:
        rec["status"] = f"not enough sizes below {largest} ({len({q.n for q in rest})} < {MIN_SIZES})"
        return rec
    measured = float(np.mean(_series([q for q in pts if q.n == largest], k, metric)[1]))
    predicted = float(power_law(largest, *p))
    draws = []
    for i, rows in enumerate(boot_rows):
        q = fit(*_series(rest, k, metric, rows, np.random.default_rng(seed + 10_000 + i)), start=p)
        if q is not None:
            draws.append(float(power_law(largest, *q)))
    lo, hi = _ci(draws)
    rec.update(status="ok", predicted=predicted, measured=measured, error=predicted - measured, low=lo, high=hi,
               covered=bool(lo is not None and lo <= measured <= hi))
    return rec


def cost_table(points: list[Point], needed: list[dict]) -> list[dict]:
    """Seconds per run (training + scoring) against n, a straight line per method, read at the
    rows each target needs."""
    out = []
    for m in sorted({p.method for p in points}):
        pts = [p for p in points if p.method == m and p.seconds]
        if not pts:
            continue
        ns = np.array([p.n for p in pts], float)
        secs = np.array([p.seconds for p in pts], float)
        slope, icpt = (np.polyfit(ns, secs, 1) if len(set(ns)) > 1 else (0.0, float(secs.mean())))
        dev = sorted({p.device for p in pts})
        for r in needed:
            if r["method"] == m and r["metric"] == "accuracy" and r["rows"]:
                out.append({"method": m, "target": r["target"], "rows": r["rows"], "device": "/".join(dev),
                            "seconds": round(max(0.0, icpt + slope * r["rows"]), 1)})
        out.append({"method": m, "target": None, "rows": None, "device": "/".join(dev),
                    "seconds_per_run": {int(n): round(float(secs[ns == n].mean()), 1) for n in sorted(set(ns))}})
    return out


def _ci(xs):
    """Percentile 95% interval; an infinite draw (target not reached) makes an unbounded end."""
    xs = np.array([x for x in xs if x is not None], float)
    if not len(xs):
        return None, None
    big = 1e15
    lo, hi = np.percentile(np.minimum(xs, big), [2.5, 97.5])
    return (math.inf if lo >= big else float(lo)), (math.inf if hi >= big else float(hi))


def _int(x):
    if x is None:
        return None
    return None if not math.isfinite(x) else int(math.ceil(x))


# ---------------------------------------------------------------- words and the step

def name(m: str) -> str:
    return METHOD_NAMES.get(m, m)


FAR = 25  # past this multiple of the largest measured size, the headline gives no number


def headline(res: dict) -> str:
    """A short paragraph from the numbers: rows needed per target, crossovers, cost. Answers far
    past the measured sizes are said to be out of reach of the data, not given as numbers."""
    lines = []
    acc = [r for r in res["labels_needed"] if r["metric"] == "accuracy"]
    largest = {f["method"]: max(f["sizes"]) for f in res["fits"]}
    fell = {f["method"]: f["falls"] for f in res["fits"] if f["metric"] == "accuracy" and f.get("falls")}
    smallest = {f["method"]: min(f["sizes"]) for f in res["fits"]}
    for m in dict.fromkeys(r["method"] for r in acc):
        if m in fell:
            d = fell[m]
            lines.append(f"- **{name(m)}**: accuracy falls as rows grow ({d['best']:.2f} at {d['best_rows']} rows, "
                         f"{d['at_largest']:.2f} at {d['largest_rows']}): not a learning curve, no rows-needed figure")
            continue
        parts = []
        for r in (x for x in acc if x["method"] == m):
            if r.get("below_measured"):
                parts.append(f"{r['target']:.0%}: already at the smallest size measured ({smallest[m]} rows)")
            elif not r["reachable"]:
                parts.append(f"{r['target']:.0%}: not reached (fitted ceiling {r['ceiling']:.2f})")
            elif r["rows"] > FAR * largest[m]:
                parts.append(f"{r['target']:.0%}: beyond {FAR}x the largest size measured: not enough data to say")
            else:
                far = not r["high"] or r["high"] > FAR * largest[m]
                ci = f" [{r['low'] or '?'}–{'∞' if far else r['high']}]"
                parts.append(f"{r['target']:.0%}: ~{r['rows']} rows{ci}" + (" (extrapolated)" if r["extrapolated"] else ""))
        lines.append(f"- **{name(m)}**: " + "; ".join(parts))
    for f in res["fits"]:
        if f["metric"] == "accuracy" and f["status"] != "ok":
            lines.append(f"- **{name(f['method'])}**: no fit ({f['status']}): not enough data to say")
    for c in (c for c in res["crossovers"] if c["metric"] == "accuracy"):
        if c["other"] in fell:
            lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: no crossover to give ({name(c['other'])} "
                         f"falls as rows grow)")
            continue
        if c["kind"] == "from the start":
            txt = f"ahead from the smallest size ({c['range'][0]} rows)"
        elif c["kind"] == "never":
            txt = f"never overtakes it up to {c['range'][1]} rows"
        else:
            txt = (f"overtakes it at ~{c['rows']} rows [{c['low'] or '?'}–{c['high'] or '∞'}]"
                   + (" (past the measured sizes)" if c["extrapolated"] else ""))
        lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: {txt}")
    costs = [c for c in res["cost"] if c.get("target") is not None]
    inside = {(r["method"], r["target"]) for r in acc if r["reachable"] and not r["extrapolated"]}
    common = [t for t in res["targets"] if len({c["method"] for c in costs if (c["method"], t) in inside}) >= 2]
    if common:  # the highest target that at least two methods reach inside the measured range
        t = max(common)
        lines.append(f"- Compute to reach {t:.0%} accuracy (train + score, one run): " + "; ".join(
            f"{name(c['method'])} ~{_dur(c['seconds'])} {re.sub('[cg]pu', lambda m: m[0].upper(), c['device'])} ({c['rows']} rows)"
            for c in costs if c["target"] == t and (c["method"], t) in inside))
    return "\n".join(lines) if lines else "Not enough runs in objs/ to fit a learning curve."


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def table(res: dict) -> str:
    rows = ["method            metric    target  rows    95% interval      note"]
    for r in res["labels_needed"]:
        note = "not reached: ceiling a = %.3f" % r["ceiling"] if not r["reachable"] else (
            "extrapolated" if r["extrapolated"] else "")
        ci = f"[{r['low'] or '?'}, {r['high'] or 'inf'}]" if r["reachable"] else ""
        rows.append(f"{r['method']:<17} {r['metric']:<9} {r['target']:<7} {str(r['rows'] or '-'):<7} {ci:<17} {note}")
    for f in res["fits"]:
        if f["status"] != "ok":
            rows.append(f"{f['method']:<17} {f['metric']:<9} no fit: {f['status']}")
    for c in res["crossovers"]:
        rows.append(f"crossover {c['metric']}: {c['llm']} vs {c['other']}: {c['kind']} {c['rows'] or ''} "
                    f"[{c['low'] or '?'}, {c['high'] or 'inf'}]")
    for b in res["backtest"]:
        if b["status"] == "ok":
            rows.append(f"backtest {b['method']} {b['metric']} at {b['held_out']}: predicted {b['predicted']:.3f}, "
                        f"measured {b['measured']:.3f}, error {b['error']:+.3f}, covered {b['covered']}")
        else:
            rows.append(f"backtest {b['method']} {b['metric']}: {b['status']}")
    return "\n".join(rows)


def run(cfg) -> int:
    res = analyse(cfg.eval.out_dir, cfg.report.targets, cfg.report.curve_bootstrap)
    path = Path(cfg.report.out_dir) / "labels_needed.json"
    atomic_write_json(path, res)
    print(table(res))
    print(f"[curve] {path}")
    return 0
