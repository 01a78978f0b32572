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
RANDOM = "random"
STRATEGY_ORDER = ("random", "typical", "uncertain")


def key(method: str, selection: str | None) -> str:
    """A curve's key: the method on random rows, method@strategy on rows a strategy chose."""
    return method if selection in (None, RANDOM) else f"{method}@{selection}"


def base(k: str) -> str:
    return k.split("@")[0]


def selection_of(k: str) -> str:
    return k.split("@")[1] if "@" in k else RANDOM


def _order(k: str) -> tuple:
    sel = selection_of(k)
    return (CURVE_METHODS.index(base(k)), STRATEGY_ORDER.index(sel) if sel in STRATEGY_ORDER else 99, sel)


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
        pts.append(Point(key(r["method"], r.get("selection")), n, r.get("seed"), pred, gold, sum(secs) if secs else None,
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
            calibration: dict | None = None, plan_cfg=None, grown: str | None = None, available: tuple | None = None
            ) -> dict:
    """Every fit, answer, comparison and the plan. grown: the selection labelling rounds grew (the plan
    continues it: only its rows have labels); available: the rows a plan can still ask for (rounds.rows_available)."""
    cal = calibration or load_calibration()
    rule = cal["rule"]
    points, labels = load_points(objs_dir)
    k = len(labels)
    methods = sorted({p.method for p in points}, key=_order)
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
            rec["shape"] = shape(ns, ys, len(pts[0].gold))
            out["fits"].append(rec)
            for t in targets:
                out["labels_needed"].append(_needed(m, metric, t, curve, bs, sizes, cal, rec["shape"]))
            out["backtest"].append(backtest(pts, k, metric, boot_rows, seed, cal["rule"], lambda r: widen_at(cal, r)))
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
    if plan_cfg is not None:
        out["plan"] = make_plan(plan_cfg, best, by_m, fits, boots, out["fits"], k, cal, seed, out["savings"], grown,
                                available)
    out["cost"] = cost_table(points, out["labels_needed"])
    out["split"] = "/".join(sorted({str(r.get("split")) for r in load_results(objs_dir) if r.get("split")}))
    icl = {(r["train_rows"], r.get("seed")): r["icl"] for r in load_results(objs_dir)
           if r["method"] in ICL_METHODS and r.get("icl") and r.get("selection", RANDOM) == RANDOM}  # the free and constrained runs share their info
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
            mean = float(np.mean(_series(group, k, "accuracy")[1]))
            draws = [float(np.mean(_series(group, k, "accuracy", rows, np.random.default_rng(seed + 7 + i))[1]))
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


def plan_selection(method: str, best: dict, saved: list[dict], grown: str | None) -> tuple[str, str]:
    """Which rows the plan continues, and why. After a labelling round, the selection that grew: only its
    rows have labels. Otherwise the method's best measured selection only where choosing rows saves labels
    measurably (a 'saves' interval above 0 at some target, a 'costs' at none): one seed's mean over a few
    sizes is noise, and a plan that follows noise asks for the wrong rows."""
    if grown:
        return grown, "the rows the labelling rounds grew"
    sel = best.get(method, RANDOM)
    if sel == RANDOM:
        return RANDOM, "random rows measured best"
    mine = [x for x in saved if x["method"] == method and x["selection"] == sel]
    if any(x["status"] == "saves" for x in mine) and not any(x["status"] == "costs" for x in mine):
        return sel, f"{sel} rows save labels measurably"
    return RANDOM, f"{sel} rows measured higher, but no saving is measurable with its interval"


def make_plan(p, best: dict, by_m: dict, fits: dict, boots: dict, fit_recs: list[dict], k: int, cal: dict,
              seed: int, saved: list[dict] = (), grown: str | None = None, available: tuple | None = None) -> dict:
    """The labelling plan (fewshot/plan.py) for plan.method on the rows plan_selection picks."""
    from . import plan as P
    sel, why_sel = plan_selection(p.method, best, list(saved), grown)
    m = key(p.method, sel)
    rec = {"method": p.method, "selection": sel, "selection_why": why_sel, "target": p.target,
           "costs": {"label": p.cost_per_label, "round": p.cost_per_round, "max_ratio": p.max_ratio}}
    if m not in by_m:
        return {**rec, "action": "unknown", "why": f"no {name(p.method)} runs scored"}
    pts = by_m[m]
    ns, ys = _series(pts, k, "accuracy")
    means = {n: float(np.mean([y for a, y in zip(ns, ys) if a == n])) for n in set(ns)}
    n_have = max(means)
    fit = next((f for f in fit_recs if f["method"] == m and f["metric"] == "accuracy"), {})
    shape_ = (fit.get("shape") or {}).get("reason")
    if (m, "accuracy") not in fits and not shape_:
        shape_ = f"no learning curve ({fit.get('status', 'no fit')})"
    if (m, "accuracy") in fits and not shape_:
        shape_ = cm.degenerate(fits[(m, "accuracy")])
    no_stop = P.dip_reason(means)
    draws = P.rows_draws(boots.get((m, "accuracy"), []), p.target, n_have, P.widen_from(cal),
                         np.random.default_rng(seed + 99)) if (m, "accuracy") in fits else np.array([])
    ceiling_hi = (fit.get("ceiling_interval") or [None, None])[1]
    if ceiling_hi is not None:  # the ceiling is a forecast past every size: add the farthest benchmarked error
        ceiling_hi += P.widen_from(cal)(math.inf)
    # the most rows a round can reach: the train split, or the rows held plus the pool's unlabelled ones
    max_total = None if not available else available[1] if available[0] == "train" else n_have + available[1]
    out = P.decide(draws, n_have, p.target, P.Costs(p.cost_per_label, p.cost_per_round, p.max_ratio),
                   measured_best=max(means.values()), ceiling_high=ceiling_hi, bad_shape=shape_, no_stop=no_stop,
                   odds=P.load_odds(), max_total=max_total)
    return {**rec, **out, "draws": len(draws)}


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
    sel = selection_of(m)
    return METHOD_NAMES.get(base(m), base(m)) + ("" if sel == RANDOM else f", {sel} rows")


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
    fell = {f["method"]: f["shape"] for f in res["fits"] if f["metric"] == "accuracy" and f.get("shape")}
    smallest = {f["method"]: min(f["sizes"]) for f in res["fits"]}
    seeds = res.get("seeds", {})
    for m in dict.fromkeys(r["method"] for r in acc):
        one_seed = " _(one training seed: intervals cover test-row noise only)_" if seeds.get(m) == 1 else ""
        if m in fell:
            lines.append(f"- **{name(m)}**: {fell[m]['reason']}: not a learning curve, no rows-needed figure "
                         f"(not enough data to say)")
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
        unit = " (x = demonstrations shown)" if base(m) in ICL_METHODS else ""
        lines.append(f"- **{name(m)}**{unit}: " + "; ".join(parts) + one_seed)
    for f in res["fits"]:
        if f["metric"] == "accuracy" and f["status"] != "ok":
            lines.append(f"- **{name(f['method'])}**: no fit ({f['status']}): not enough data to say")
    for c in (c for c in res["crossovers"] if c["metric"] == "accuracy" and c["other"] not in ICL_METHODS):
        if c["other"] in fell:
            how = "falls as rows grow" if fell[c["other"]]["kind"] == "falls" else "dips as rows grow"
            lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: no crossover to give ({name(c['other'])} {how})")
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


def summary(res: dict) -> str:
    """The first screen: the verdict on random rows, the verdict with each method at its best measured
    selection (and whether that changes it), what choosing rows saved, and the labelling plan."""
    lines = [x for x in verdict(res) if "In short" in x]
    best = res.get("best_selection") or {}
    if res.get("comparisons_best"):
        chosen = ", ".join(f"{name(m)}: {sel}" for m, sel in best.items() if m not in ICL_METHODS)
        again = [x for x in verdict({**res, "comparisons": res["comparisons_best"]}) if "In short" in x]
        if again:
            said = again[0].split("**In short**: ", 1)[1]
            same = lines and said == lines[0].split("**In short**: ", 1)[1]
            lines.append(f"- **Each at its best measured rows** ({chosen}; picked on the {res.get('split', 'scored')} "
                         f"split, so optimistic): {said}" + (" The verdict is the same." if same else
                                                             " **This changes the verdict.**"))
    t = (res.get("plan") or {}).get("target")
    for sv in (x for x in res.get("savings", []) if x["target"] == t):
        what = f"Choosing rows ({sv['selection']}) for {name(sv['method'])}, {t:.0%}"
        if sv["status"] in ("saves", "costs"):
            lo, hi = sv["low"], sv["high"]
            verb = "saves" if sv["status"] == "saves" else "costs"
            lines.append(f"- {what}: {verb} {abs(sv['saving']):.0%} [{min(abs(lo), abs(hi)):.0%}–{max(abs(lo), abs(hi)):.0%}] "
                         f"of the labels ({sv['rows_chosen']} rows against {sv['rows_random']} random)")
        elif sv["status"] == "no saving measurable":
            lines.append(f"- {what}: no saving measurable ({sv['rows_chosen']} rows against {sv['rows_random']} "
                         f"random; the interval holds 0)")
        else:
            lines.append(f"- {what}: {sv['status']}")
    if res.get("plan"):
        from .plan import words
        pl = res["plan"]
        sel = f", {pl['selection']} rows" if pl.get("selection", RANDOM) != RANDOM else ""
        lines.append("- " + words(pl, METHOD_NAMES.get(pl["method"], pl["method"]) + sel))
    return "\n".join(lines)


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


def write(cfg, res: dict, out_dir) -> list[Path]:
    """label_next.csv/.jsonl (the plan's rows, its ask kept in asks/), label_plan.json (the plan, with the
    next step as commands) and labels_needed.json (everything)."""
    from .label_next import rank
    from .rounds import next_step
    out = Path(out_dir)
    paths = [out / "labels_needed.json"]
    if res.get("plan"):
        # "unknown" ranks the rows held again (a doubling): the way to say more is more labels
        nxt = rank(cfg, res["plan"], out) if res["plan"].get("action") in ("label", "unknown") else None
        res["plan"]["label_next"] = nxt.name if nxt else None
        if nxt:
            res["plan"]["next"] = next_step(cfg, nxt, sum(1 for _ in nxt.with_suffix(".jsonl").open()))
        plan = {**res["plan"], "savings": [x for x in res.get("savings", []) if x["method"] == res["plan"]["method"]],
                "split": res.get("split"), "curve_rule": res.get("rule")}
        atomic_write_json(out / "label_plan.json", plan)
        paths += [out / "label_plan.json"] + ([nxt, nxt.with_suffix(".jsonl")] if nxt else [])
    atomic_write_json(paths[0], res)
    return paths


def run(cfg) -> int:
    from .rounds import grown, rows_available
    res = analyse(cfg.eval.out_dir, cfg.report.targets, cfg.report.curve_bootstrap, plan_cfg=cfg.plan, grown=grown(cfg),
                  available=rows_available(cfg))
    paths = write(cfg, res, cfg.report.out_dir)
    print(table(res))
    print(summary(res))
    print(f"[curve] {', '.join(str(p) for p in paths)}")
    return 0
