"""How many labelled rows each method needs: learning curves fitted by the estimator that the
curve benchmark chose (curve_models, curve_bench), with bootstrap intervals over evaluation rows
and training seeds, widened by the family error the benchmark measured; targets, crossovers,
which method is ahead at each measured size, cost, and a backtest.

Every answer carries its extrapolation ratio (rows / largest measured) and what the benchmark
measured at that ratio on real learning curves; where 10% of such answers were off by more than
TRUST_P90 (or the ratio is past anything benchmarked), it says "not enough data to say".

Input: every scored run in objs/ with its per-row predictions (objs/<run>/predictions.jsonl).
Output: report/labels_needed.json and a printed table (`python -m fewshot curve --config ...`)."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import curve_models as cm
from .fileio import atomic_write_json, read_jsonl
from .results import METHOD_NAMES, load_results

METRICS = ("accuracy", "macro_f1")
ICL_METHODS = ("llm_icl", "llm_icl_constrained")  # placed at k, the demonstrations shown
CURVE_METHODS = ("llm_lora", *ICL_METHODS, "tfidf", "encoder", "setfit")
LLM = "llm_lora"
INTERVAL = 0.90       # every interval of this step: the coverage the benchmark calibrates
TRUST_P90 = 0.05      # an answer needs 90% of benchmarked answers at its ratio within this
MIN_SIZES = cm.MIN_SIZES
CALIBRATION = Path(__file__).with_name("curve_calibration.json")


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


def _where(device: str, cores: list | None) -> str:
    return f"{device} ({len(cores)} core{'s' if len(cores) > 1 else ''})" if device == "cpu" and cores else device


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
        # where it ran: a run side by side on a lane of a CPU's cores says how many it had
        trained_here = bool(r.get("train_device"))
        train_dev = _where(r.get("train_device") or sc.get("device") or "cpu",
                           r.get("train_cores", r.get("cores")) if trained_here else sc.get("cores"))
        score_dev = _where(sc["device"], sc.get("cores")) if sc.get("device") else train_dev  # LLM: GPU train, CPU score
        n = int(r["train_rows"])
        if r["method"] in ICL_METHODS:  # a point is what the model was shown, not the subset it came from
            n = int((r.get("icl") or {}).get("k") or n)
        pts.append(Point(r["method"], n, r.get("seed"), pred, gold, sum(secs) if secs else None,
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

def analyse(objs_dir: str | Path, targets: list[float], n_boot: int = 200, seed: int = 0,
            calibration: dict | None = None) -> dict:
    cal = calibration or load_calibration()
    rule = cal["rule"]
    points, labels = load_points(objs_dir)
    k = len(labels)
    methods = [m for m in CURVE_METHODS if any(p.method == m for p in points)]
    by_m = {m: [p for p in points if p.method == m] for m in methods}
    n_eval = len(points[0].gold) if points else 0
    rng = np.random.default_rng(seed)
    boot_rows = [rng.integers(0, n_eval, n_eval) for _ in range(n_boot)]  # shared: paired across methods
    out = {"targets": targets, "bootstrap": n_boot, "interval": INTERVAL, "rule": rule,
           "benchmark": {"source": cal.get("source"), "ratios": cal.get("ratios", {})}, "trust_p90": TRUST_P90,
           "fits": [], "labels_needed": [], "crossovers": [], "comparisons": [], "backtest": [], "cost": [],
           "seeds": {m: _seeds(by_m[m]) for m in methods}}
    fits, boots = {}, {}
    for metric in METRICS:
        for m in methods:
            pts = by_m[m]
            ns, ys = _series(pts, k, metric)
            sizes = sorted(set(ns))
            curve = cm.fit_curve(ns, ys, rule)
            rec = {"method": m, "metric": metric, "sizes": sizes, "points": len(ns), "seeds": _seeds(pts)}
            if curve is None:
                rec["status"] = (f"not enough sizes ({len(sizes)} < {MIN_SIZES})" if len(sizes) < MIN_SIZES
                                 else "fit did not converge")
                out["fits"].append(rec)
                continue
            bs = [cm.fit_curve(*_series(pts, k, metric, boot_rows[i], np.random.default_rng(seed + 1 + i)), rule,
                               start=curve) for i in range(n_boot)]
            fits[(m, metric)], boots[(m, metric)] = curve, bs
            ok = [q for q in bs if q is not None]
            max_n = max(sizes)
            rec.update(status="ok", rule=rule, params=curve.params(), ceiling=curve.ceiling,
                       ceiling_interval=_ci([q.ceiling for q in ok]), converged=f"{len(ok)}/{n_boot}",
                       line=_line(curve, ok, min(sizes), max_n, cal))
            rec["falls"] = falls(ns, ys, len(pts[0].gold)) if metric == "accuracy" else None
            out["fits"].append(rec)
            for t in targets:
                out["labels_needed"].append(_needed(m, metric, t, curve, bs, sizes, cal))
            out["backtest"].append(backtest(pts, k, metric, boot_rows, seed, cal["rule"], lambda r: widen_at(cal, r)))
    for metric in METRICS:  # the LLM against every other method: where its curve crosses theirs
        if (LLM, metric) not in fits:
            continue
        for m in methods:
            if m == LLM or (m, metric) not in fits:
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
    out["comparisons"] = compare(by_m, k, boot_rows, seed)
    out["cost"] = cost_table(points, out["labels_needed"])
    icl = {(r["train_rows"], r.get("seed")): r["icl"] for r in load_results(objs_dir)
           if r["method"] in ICL_METHODS and r.get("icl")}  # the free and constrained runs share their info
    out["icl"] = [{"rows": n, "seed": s, **{k: info.get(k) for k in ("k", "budget", "tokens", "budget_sets_k",
                                                                        "same_for")}}
                  for (n, s), info in sorted(icl.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]
    return out


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


def _needed(m: str, metric: str, t: float, curve, boots, sizes, cal: dict) -> dict:
    """Rows to reach target t, its interval (bootstrap, widened by the benchmark's family error at
    the answer's ratio) and how far to trust it."""
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
            "trust": trust, "enough_data": trusted(trust)}


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
            mean = float(np.mean(_series(group, k, "accuracy")[1]))
            draws = [float(np.mean(_series(group, k, "accuracy", rows, np.random.default_rng(seed + 7 + i))[1]))
                     for i, rows in enumerate(boot_rows)]
            cache[(who, n)] = (mean, *_ci(draws)) if draws else (mean, mean, mean)
        return cache[(who, n)]

    for m, pts in by_m.items():
        if m == LLM or m in ICL_METHODS:
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
    curve = cm.fit_curve(*_series(rest, k, metric), rule) if rest else None
    if curve is None:
        rec["status"] = f"not enough sizes below {largest} ({len({q.n for q in rest})} < {MIN_SIZES})"
        return rec
    measured = float(np.mean(_series([q for q in pts if q.n == largest], k, metric)[1]))
    predicted = float(curve(largest))
    draws = []
    for i, rows in enumerate(boot_rows):
        q = cm.fit_curve(*_series(rest, k, metric, rows, np.random.default_rng(seed + 10_000 + i)), rule, start=curve)
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


# ---------------------------------------------------------------- words and the step

def name(m: str) -> str:
    return METHOD_NAMES.get(m, m)


def interval_words(r: dict) -> str:
    """'[low–high]' for a reader. An upper end past the farthest ratio the curve benchmark measured
    (or none: some bootstrap curves never get there) is no number to print: 'beyond N' says how far
    the benchmark reaches instead (a plateauing curve gave '[61–50000000001254]')."""
    lim, hi = r.get("benchmarked_to"), r.get("high")
    if hi is None or (lim and hi > lim):
        hi = f"beyond {lim}" if lim else "beyond the data"
    return f"[{r.get('low') or '?'}–{hi}]"


def _trust_words(r: dict) -> str:
    """Why an answer is or is not given: the benchmark's error at its ratio."""
    t = r.get("trust")
    if not t:
        top = max((float(x) for x in r.get("_ratios", [])), default=None)
        return "past every ratio benchmarked" + (f" ({top:g}x)" if top else "")
    if t.get("inside"):
        return "inside the measured sizes"
    return f"LCDB at {t['ratio']:g}x: 90% of {t['curves']} curves within {t['p90_abs']:.3f}"


def _sizes(ns: list[int]) -> str:
    return ", ".join(str(n) for n in ns)


def headline(res: dict) -> str:
    """The answer in short lines, generated from the numbers: rows needed per target with how far
    to trust each, crossovers, who is ahead at each measured size, cost. An answer whose
    benchmarked error is too large says "not enough data to say" instead of a number."""
    lines = []
    ratios = list(res.get("benchmark", {}).get("ratios", {}))
    acc = [dict(r, _ratios=ratios) for r in res["labels_needed"] if r["metric"] == "accuracy"]
    fell = {f["method"]: f["falls"] for f in res["fits"] if f["metric"] == "accuracy" and f.get("falls")}
    smallest = {f["method"]: min(f["sizes"]) for f in res["fits"]}
    seeds = res.get("seeds", {})
    for m in dict.fromkeys(r["method"] for r in acc):
        one_seed = " _(one training seed: intervals cover test-row noise only)_" if seeds.get(m) == 1 else ""
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
            elif not r.get("enough_data"):
                parts.append(f"{r['target']:.0%}: not enough data to say (~{r['ratio']:.0f}x the largest size "
                             f"measured; {_trust_words(r)})")
            else:
                parts.append(f"{r['target']:.0%}: ~{r['rows']} rows {interval_words(r)}, {r['ratio']:.1f}x the "
                             f"largest measured ({_trust_words(r)})")
        unit = " (x = demonstrations shown)" if m in ICL_METHODS else ""
        lines.append(f"- **{name(m)}**{unit}: " + "; ".join(parts) + one_seed)
    for f in res["fits"]:
        if f["metric"] == "accuracy" and f["status"] != "ok":
            lines.append(f"- **{name(f['method'])}**: no fit ({f['status']}): not enough data to say")
    for c in (c for c in res["crossovers"] if c["metric"] == "accuracy" and c["other"] not in ICL_METHODS):
        if c["other"] in fell:
            lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: no crossover to give ({name(c['other'])} "
                         f"falls as rows grow)")
            continue
        if c["kind"] == "from the start":
            txt = f"its curve is above from the smallest size ({c['range'][0]} rows)"
        elif c["kind"] == "never":
            txt = f"its curve never crosses above up to {c['range'][1]} rows"
        elif not trusted(c.get("trust")):
            txt = (f"curves cross ~{c['ratio']:.0f}x past the largest size measured: not enough data to say "
                   f"({_trust_words(dict(c, _ratios=ratios))})")
        else:
            txt = f"curves cross at ~{c['rows']} rows {interval_words(c)}"
        lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: {txt}")
    lines += icl_words(res)
    lines += verdict(res)
    costs = [c for c in res["cost"] if c.get("target") is not None]
    inside = {(r["method"], r["target"]) for r in acc if r["reachable"] and not r["extrapolated"]}
    common = [t for t in res["targets"] if len({c["method"] for c in costs if (c["method"], t) in inside}) >= 2]
    if common:  # the highest target that at least two methods reach inside the measured range
        t = max(common)
        lines.append(f"- Compute to reach {t:.0%} accuracy (train + score, one run): " + "; ".join(
            f"{name(c['method'])} ~{_dur(c['seconds'])} {re.sub('[cg]pu', lambda m: m[0].upper(), c['device'])} ({c['rows']} rows)"
            for c in costs if c["target"] == t and (c["method"], t) in inside))
    return "\n".join(lines) if lines else "Not enough runs in objs/ to fit a learning curve."


def icl_words(res: dict) -> list[str]:
    """What the in-context runs were shown, and where the token budget, not the subset, set k."""
    runs = sorted(res.get("icl", []), key=lambda r: (r["seed"] or 0, r["rows"]))
    if not runs:
        return []
    shown = ", ".join(f"{r['k']} of {r['rows']}" + "".join(f" (= {n})" for n in r.get("same_for") or [])
                      for r in runs)
    capped = [r["rows"] for r in runs if r.get("budget_sets_k")]
    same = [n for r in runs for n in r.get("same_for") or []]
    txt = f"- In-context: demonstrations shown per subset: {shown}"
    if capped:
        txt += f"; the {runs[0]['budget']}-token budget, not the subset, sets k at {_sizes(capped)} rows"
    if same:
        txt += f"; {_sizes(same)} rows gave the same demonstrations as a smaller subset and were scored once"
    return [txt]


def verdict(res: dict) -> list[str]:
    """Who is ahead at each size both were measured, by one rule: overlapping intervals are 'level'.
    Ends with the 'In short' sentence, generated from the same rule, never written by hand."""
    comps = res.get("comparisons", [])
    if not comps:
        return []
    pct = f"{res.get('interval', INTERVAL):.0%}"
    lines, groups = [], {}
    for o in dict.fromkeys(c["other"] for c in comps):
        cs = [c for c in comps if c["other"] == o]
        g = {v: [c["rows"] for c in cs if c["llm_is"] == v] for v in ("ahead", "level", "behind")}
        groups[o] = g
        seg = [f"{v} at {_sizes(g[v])} rows" for v in ("behind", "level", "ahead") if g[v]]
        lines.append(f"- {name(LLM)} vs {name(o)}, measured: " + "; ".join(seg))
    worse = [o for o, g in groups.items() if g["behind"] and not g["ahead"]]
    level = [o for o, g in groups.items() if not g["behind"] and not g["ahead"]]
    better = [o for o, g in groups.items() if g["ahead"] and not g["behind"]]
    mixed = [o for o, g in groups.items() if g["ahead"] and g["behind"]]
    said = []
    if worse:
        said.append(f"never ahead of {' and '.join(name(o) for o in worse)} at a measured size (behind at some, level "
                    f"at the rest): not shown to be worth it over them here")
    if level:
        said.append(f"level with {' and '.join(name(o) for o in level)} at every size measured")
    if better:
        said.append(f"ahead of {' and '.join(name(o) for o in better)} at some sizes and never behind")
    if mixed:
        said.append(f"ahead of {' and '.join(name(o) for o in mixed)} at some sizes and behind at others")
    seeds = res.get("seeds", {})
    note = (" One LLM training seed: its intervals cover test-row noise only." if seeds.get(LLM) == 1 else "")
    lines.append(f"- **In short**: {name(LLM)} is " + "; ".join(said) + f". (Level = {pct} intervals overlap, "
                 f"evaluation rows and training seeds resampled.){note}")
    return lines


def answers_table(res: dict, metric: str = "accuracy"):
    """Rows needed per method and target, in words a reader needs (the JSON keeps everything)."""
    import pandas as pd
    rows = []
    for r in (x for x in res["labels_needed"] if x["metric"] == metric):
        if r.get("below_measured"):
            answer = "met at the smallest size"
        elif not r["reachable"]:
            answer = f"not reached (ceiling {r['ceiling']:.2f})"
        elif not r.get("enough_data"):
            answer = "not enough data to say"
        else:
            answer = f"~{r['rows']}"
        t = r.get("trust")
        bench = ("inside the data" if t and t.get("inside") else f"{t['p90_abs']:.3f} ({t['ratio']:g}x)" if t
                 else "no benchmark")
        rows.append({"method": name(r["method"]), "target": f"{r['target']:.0%}", "rows needed": answer,
                     f"{res.get('interval', INTERVAL):.0%} interval": (interval_words(r) if r.get("enough_data")
                                                                      else ""),
                     "x largest measured": f"{r['ratio']:.1f}" if r.get("ratio") else "",
                     "benchmark: 90% of answers within": bench})
    return pd.DataFrame(rows)


def comparisons_table(res: dict):
    import pandas as pd
    return pd.DataFrame([{"rows": c["rows"], "vs": name(c["other"]), "LLM + LoRA": _acc(c["llm"], c["llm_interval"]),
                          "other": _acc(c["other_acc"], c["other_interval"]), "LLM is": c["llm_is"]}
                         for c in res.get("comparisons", [])])


def backtest_table(res: dict):
    """The backtest in words: each method refitted without its largest size, predicting it."""
    import pandas as pd
    return pd.DataFrame([{"method": name(b["method"]), "held out": f"{b['held_out']} rows",
                          "predicted": f"{b['predicted']:.3f}", "measured": f"{b['measured']:.3f}",
                          "error": f"{b['error']:+.3f}", "measured inside the interval": "yes" if b["covered"] else "no"}
                         for b in res["backtest"] if b["status"] == "ok" and b["metric"] == "accuracy"])


def cost_words_table(res: dict):
    """Compute for one run at the rows each target needs, only where the rows-needed answer stands
    (a TF-IDF answer of 205239 rows is not a cost to read)."""
    import pandas as pd
    answers = {(r["method"], r["target"]): r for r in res["labels_needed"] if r["metric"] == "accuracy"}
    rows = []
    for c in (c for c in res["cost"] if c.get("target") is not None):
        ok = answers.get((c["method"], c["target"]), {}).get("enough_data")
        rows.append({"method": name(c["method"]), "target": f"{c['target']:.0%}",
                     "rows needed": f"~{c['rows']}" if ok else "not enough data to say",
                     "one run, train + score": (_dur(c["seconds"]) if c["seconds"] >= 1 else "under 1 s") if ok else "",
                     "device": c["device"]})
    return pd.DataFrame(rows)


def _acc(x, ci) -> str:
    return f"{x:.3f} [{ci[0]:.3f}–{ci[1]:.3f}]"


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def table(res: dict) -> str:
    rows = [f"method               metric    target  rows    {res.get('interval', INTERVAL):.0%} interval    ratio  note"]
    for r in res["labels_needed"]:
        note = ("not reached: ceiling %.3f" % r["ceiling"] if not r["reachable"] else
                "" if r.get("enough_data") else "not enough data to say")
        ci = interval_words(r) if r["reachable"] else ""
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else ""
        rows.append(f"{r['method']:<20} {r['metric']:<9} {r['target']:<7} {str(r['rows'] or '-'):<7} {ci:<17} "
                    f"{ratio:<6} {note}")
    for f in res["fits"]:
        if f["status"] != "ok":
            rows.append(f"{f['method']:<20} {f['metric']:<9} no fit: {f['status']}")
    for c in res["crossovers"]:
        rows.append(f"crossover {c['metric']}: {c['llm']} vs {c['other']}: {c['kind']} {c['rows'] or ''} "
                    f"{interval_words(c)}")
    for b in res["backtest"]:
        if b["status"] == "ok":
            rows.append(f"backtest {b['method']} {b['metric']} at {b['held_out']}: predicted {b['predicted']:.3f}, "
                        f"measured {b['measured']:.3f}, error {b['error']:+.3f}, covered {b['covered']}")
        else:
            rows.append(f"backtest {b['method']} {b['metric']}: {b['status']}")
    rows += [line.lstrip("- ") for line in verdict(res)]
    return "\n".join(rows)


def run(cfg) -> int:
    res = analyse(cfg.eval.out_dir, cfg.report.targets, cfg.report.curve_bootstrap)
    path = Path(cfg.report.out_dir) / "labels_needed.json"
    atomic_write_json(path, res)
    print(table(res))
    print(f"[curve] {path}")
    return 0
