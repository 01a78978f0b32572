"""The labelling plan: for one method and accuracy target, stop (enough rows), give up (the curve's
ceiling sits below the target), or label q more rows and rerun, with q chosen from the calibrated
distribution of rows needed as LOC chooses a collection size (Mahmood, Lucas, Acuna, Li, Philion,
Alvarez, Yu, Fidler, Law: "Optimizing data collection for machine learning", NeurIPS 2022): the
labels bought now against the chance of needing another round.

The distribution: every bootstrap refit of the learning curve (evaluation rows and seeds resampled)
read at the target shifted by a draw of the family error the curve benchmark measured at that
distance past the data (normal, its 90% half-width the benchmark's widening), so a forecast 4x past
the data carries LCDB's 4x error. `decide` is pure arithmetic on those draws (tested on a known curve;
backtested on LCDB's curves by `python -m fewshot plan-bench`); `make_plan` gathers them from the fitted
curves and picks which rows the plan continues."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import curve, curve_models as cm
from .results import METHOD_NAMES
from .selection import RANDOM

Z90 = 1.6449  # a normal's 90% half-width in standard deviations
ODDS = Path(__file__).with_name("plan_odds.json")  # the stated odds' correction, fitted on LCDB's choosing half


def load_odds(path: Path = ODDS) -> dict | None:
    """The correction plan-bench fitted (`--half choose --write-odds`): the model's p of reaching the target
    against how often it happened, isotonic. None without the file: the model's p is stated as it is."""
    return json.loads(path.read_text()) if path.exists() else None


def recalibrate(p: float, odds: dict | None) -> float:
    """The probability to state for the model's p: read off the isotonic map (linear between its steps)."""
    return float(np.interp(p, odds["x"], odds["y"])) if odds else float(p)


@dataclass(frozen=True)
class Costs:
    label: float = 1.0        # one labelled row
    round: float = 500.0      # one more round: set-up, retraining, the wait (plan.cost_per_round)
    max_ratio: float = 8.0    # one round buys at most this many times the rows held


def widen_from(cal: dict):
    """The curve benchmark's widening at a ratio past the data (fewshot/curve_calibration.json), held
    at the farthest benchmarked ratio's beyond it: the plan must price far forecasts, and the widest
    error measured is the least it can assume there."""
    rows = sorted((float(r), v["widen"]) for r, v in cal.get("ratios", {}).items())

    def widen(r: float) -> float:
        if r <= 1 or not rows:
            return 0.0
        return next((w for x, w in rows if r <= x), rows[-1][1])
    return widen


def rows_draws(boots, target: float, n_have: int, widen, rng: np.random.Generator) -> np.ndarray:
    """Rows needed under each bootstrap curve, the target shifted by the benchmark's family error at
    that draw's ratio (widen(ratio) is a 90% half-width; 0 inside the data). inf: never reached."""
    out = []
    for q in boots:
        if q is None:
            continue
        n0 = cm.rows_needed(q, target)
        w = widen(n0 / n_have) if math.isfinite(n0) else widen(math.inf)
        eps = rng.normal(0.0, w / Z90) if w else 0.0
        out.append(cm.rows_needed(q, target + eps) if 0 < target + eps < 1 else (1.0 if target + eps <= 0 else math.inf))
    return np.array(out, float)


def stop_unproven(odds: dict | None) -> str | None:
    """Why a 'stop' may not be said: it is said only where the benchmark's stops came true about as rarely as
    they stated (20 or more of them, reaching the target at most 0.10 more often than stated). None without a
    correction file (the model's arithmetic alone, as tests use it)."""
    if not odds:
        return None
    st = odds.get("stop") or {}
    n, k = st.get("cases", 0), st.get("reached", 0)
    if n >= 20 and k / n <= (st.get("stated") or 0) + 0.10:
        return None
    return (f"a 'stop' is not backtested as that unlikely (on LCDB's choosing half {k} of {n} such stops reached the "
            f"target after all; docs/selection.md)")


def dip_reason(means: dict) -> str | None:
    """Why a measured curve cannot rule a target out: its mean falls from one size to the next (even within
    noise). A curve that dips has not shown its shape, so no 'stop' is read from its fit."""
    steps = sorted(means.items())
    dip = next(((n0, a, n1, b) for (n0, a), (n1, b) in zip(steps, steps[1:]) if b < a), None)
    if dip is None:
        return None
    n0, a, n1, b = dip
    return (f"the measured accuracy dips from {a:.3f} at {n0} rows to {b:.3f} at {n1} (within noise, but a curve "
            f"that dips cannot rule the target out)")


def expected_cost(q: float, n_have: int, draws: np.ndarray, costs: Costs) -> float:
    """Labels bought now, plus, where q falls short of a draw N, the rounds still needed to get there
    (each buys at most max_ratio times the rows held: ceil(log(N/q) / log(max_ratio)) of them) and the
    labels they buy, exactly N - q (optimistic: later rounds are assumed to know N). LOC's trade."""
    short = draws > q
    rounds = np.ceil(np.log(np.maximum(draws, q) / q) / math.log(costs.max_ratio) - 1e-9)
    extra = np.where(short, costs.round * rounds + costs.label * (draws - q), 0.0)
    return costs.label * (q - n_have) + float(extra.mean())


def decide(draws: np.ndarray, n_have: int, target: float, costs: Costs, *, measured_best: float | None = None,
           ceiling_high: float | None = None, bad_shape: str | None = None, no_stop: str | None = None,
           odds: dict | None = None, max_total: int | None = None) -> dict:
    """The next step, from draws of rows needed (inf = never). measured_best: the best mean accuracy
    measured: only a measured target says "enough" (a fit that says the rows held suffice while the
    measurement says not gets a small next round, not a stop); ceiling_high: the upper end of the
    fitted ceiling's interval, widened by the benchmark's farthest error (below the target: more
    labels will not get there). bad_shape: no decision at all (a dip past noise, a step-shaped fit);
    no_stop: why the curve cannot carry a "stop" (a measured dip within noise): it says "not enough
    data to say" where it would have said stop. odds: the correction of the stated p (load_odds); the
    model's own p stays in p_model. max_total: the most rows there are to label (the pool's end)."""
    out = {"target": target, "have": int(n_have)}
    if measured_best is not None and measured_best >= target:
        return {**out, "action": "enough", "why": f"{target:.0%} already measured ({measured_best:.3f})"}
    if bad_shape:
        return {**out, "action": "unknown", "why": f"not enough data to say: {bad_shape}"}
    if not len(draws):
        return {**out, "action": "unknown", "why": "not enough data to say: no curve could be fitted"}
    reach = float(np.mean(np.isfinite(draws)))
    if reach < 0.1 and no_stop:
        return {**out, "action": "unknown", "p_reachable": reach,
                "why": f"not enough data to say: {reach:.0%} of the curve's draws reach {target:.0%}, but {no_stop}"}
    unproven = stop_unproven(odds)
    if reach < 0.1 and unproven:
        return {**out, "action": "unknown", "p_reachable": reach,
                "why": f"not enough data to say: {reach:.0%} of the curve's draws reach {target:.0%}, but {unproven}"}
    if reach < 0.1:
        ceil = f" (the fitted ceiling's interval ends at {ceiling_high:.3f})" if ceiling_high is not None else ""
        return {**out, "action": "stop", "p_reachable": reach,
                "why": f"unlikely to reach {target:.0%} with more labels: {reach:.0%} of the curve's draws, the "
                       f"benchmark's error included, ever get there{ceil}"}
    finite = draws[np.isfinite(draws)]
    top = min(n_have * costs.max_ratio, max_total or math.inf)
    if top <= n_have * 1.05:
        return {**out, "action": "unknown", "p_reachable": reach,
                "why": f"not enough data to say: {max(0, max_total - n_have)} unlabelled rows left to ask for ({n_have} "
                       f"of {max_total} held), too few for a round; add rows through plan.pool"}
    grid = np.unique(np.round(np.geomspace(n_have * 1.05, top, 60)).astype(int))
    cost = [expected_cost(q, n_have, finite, costs) for q in grid]
    q = int(grid[int(np.argmin(cost))])  # past the top, the round buys the top and the next round goes on
    p_model = float(np.mean(draws <= q))
    p = recalibrate(p_model, odds)
    # the total the draws end at: the median (rows needed has a heavy tail; a mean of it can read 3e9 rows)
    total = float(np.median(np.where(draws > q, draws, q)))
    lo, hi = (float(x) for x in np.percentile(finite, [5, 95]))
    return {**out, "action": "label", "label_more": q - int(n_have), "total": q, "p_reached": p, "p_model": p_model,
            "odds_corrected": bool(odds), "p_reachable": reach,
            "median_total": math.ceil(total) if math.isfinite(total) else None,
            "rows_needed_interval": [math.ceil(lo), math.ceil(hi) if hi < cm.BEYOND else None],
            "why": f"label {q - int(n_have)} more rows ({q} in all), then rerun: {target:.0%} is then reached "
                   f"with probability {p:.2f}; median total {_rows(total)}"}


def _rows(n) -> str:
    return f"{math.ceil(n)} rows" if n is not None and math.isfinite(n) else "beyond every size the curve reaches"


def words(plan: dict, method_name: str) -> str:
    """The plan in one line for the report's first screen."""
    a, t = plan["action"], plan["target"]
    if a == "enough":
        return f"**Plan ({method_name}, {t:.0%})**: you have enough: {plan['why']}."
    if a == "label":
        rng = plan.get("rows_needed_interval") or [None, None]
        span = f" (rows needed, 90%: {rng[0]}–{rng[1] or 'beyond'})"
        sel = plan.get("selection", "random")
        line = (f"**Plan ({method_name}, {t:.0%})**: label **{plan['label_more']}** more rows ({plan['total']} in "
                f"all, {sel} rows), then rerun; probability the target is then reached: "
                f"**{plan['p_reached']:.2f}**; median total {_rows(plan['median_total'])}{span}.")
        return line + next_words(plan)
    if a == "unknown" and plan.get("next"):
        return (f"**Plan ({method_name}, {t:.0%})**: {plan['why']}; to say more, label the {plan['next']['rows']} "
                f"rows `label_next.csv` lists (the rows held again), then rerun." + next_words(plan))
    return f"**Plan ({method_name}, {t:.0%})**: {plan['why']}."


def next_words(plan: dict) -> str:
    """The next step as what to fill and what to run (label_plan.json's 'next')."""
    nxt = plan.get("next")
    if not nxt:
        return ""
    return (f"\n  **Next**: fill the `label` column of `{nxt['fill']}` (or label its rows in Label Studio and export "
            f"JSON), save it as `{nxt['save_as']}`; set `{nxt['config_line']}` in the config; run `{nxt['command']}`.")


# ---------------------------------------------------------------- the plan from the fitted curves

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


def make_plan(p, f, grown: str | None = None, available: tuple | None = None) -> dict:
    """The labelling plan for plan.method (p: the config's plan section) on the rows plan_selection
    picks, from what curve.fit found (f). grown: the selection labelling rounds grew (only its rows have
    labels); available: the rows a plan can still ask for (rounds.rows_available)."""
    best, by_m, fits, boots, k, cal, seed = f.res["best_selection"], f.by_m, f.fits, f.boots, f.k, f.cal, f.seed
    fit_recs, saved = f.res["fits"], f.res["savings"]
    sel, why_sel = plan_selection(p.method, best, list(saved), grown)
    m = curve.key(p.method, sel)
    rec = {"method": p.method, "selection": sel, "selection_why": why_sel, "target": p.target,
           "costs": {"label": p.cost_per_label, "round": p.cost_per_round, "max_ratio": p.max_ratio}}
    if m not in by_m:
        return {**rec, "action": "unknown", "why": f"no {METHOD_NAMES.get(p.method, p.method)} runs scored"}
    pts = by_m[m]
    ns, ys = curve.series(pts, k, "accuracy")
    means = {n: float(np.mean([y for a, y in zip(ns, ys) if a == n])) for n in set(ns)}
    n_have = max(means)
    fit = next((f for f in fit_recs if f["method"] == m and f["metric"] == "accuracy"), {})
    shape_ = (fit.get("shape") or {}).get("reason")
    if (m, "accuracy") not in fits and not shape_:
        shape_ = f"no learning curve ({fit.get('status', 'no fit')})"
    if (m, "accuracy") in fits and not shape_:
        shape_ = cm.degenerate(fits[(m, "accuracy")])
    no_stop = dip_reason(means)
    draws = rows_draws(boots.get((m, "accuracy"), []), p.target, n_have, widen_from(cal),
                         np.random.default_rng(seed + 99)) if (m, "accuracy") in fits else np.array([])
    ceiling_hi = (fit.get("ceiling_interval") or [None, None])[1]
    if ceiling_hi is not None:  # the ceiling is a forecast past every size: add the farthest benchmarked error
        ceiling_hi += widen_from(cal)(math.inf)
    # the most rows a round can reach: the train split, or the rows held plus the pool's unlabelled ones
    max_total = None if not available else available[1] if available[0] == "train" else n_have + available[1]
    out = decide(draws, n_have, p.target, Costs(p.cost_per_label, p.cost_per_round, p.max_ratio),
                   measured_best=max(means.values()), ceiling_high=ceiling_hi, bad_shape=shape_, no_stop=no_stop,
                   odds=load_odds(), max_total=max_total)
    return {**rec, **out, "draws": len(draws)}
