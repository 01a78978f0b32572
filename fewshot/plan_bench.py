"""How good is the labelling plan? `python -m fewshot plan-bench` follows it round by round on LCDB's
real learning curves (the reporting half, as the curve benchmark reports) and on the study's own
text curves, against two rules a person might use instead: double the rows each round, and
Prodigy's train-curve rule of thumb (keep adding a third while the last quarter of the data still
improved accuracy).

Protocol (fixed before the run):
- A curve starts with its sizes up to 8x its smallest (LCDB's sqrt(2) grid: 16 ... 128 rows for
  most curves, as the demo's 16-128), every inner seed a point.
- Its target is the mean accuracy it measured at the first size at least 4x past the start's largest
  (so it is reachable on the curve); a curve whose start already meets it is left out.
- A round: the rule says how many rows in all (q); the curve is then read at the first grid size
  >= q (labels paid: that size; measured: its mean). The plan's own fit is the study's: pow3 on every
  point, B bootstrap refits (inner seeds resampled, test accuracy redrawn binomially), the draws
  widened by fewshot/curve_calibration.json. It stops when the measured mean reaches the target
  (reached), when the rule says enough or stop (stopped short if the target was not measured), or
  after MAX_ROUNDS rounds or at the curve's largest size.
- Scored: reached (share), labels paid / the fewest grid size whose mean reaches the target (median,
  90th percentile), rounds (median, share within 3), overshoot (labels past the fewest); and the odds:
  each probability the plan stated against what the curve then measured (`calibration`)."""
from __future__ import annotations

import json
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np

from . import curve_models as cm
from .fileio import atomic_write_json, atomic_write_text
from .plan import ODDS, Costs, decide, dip_reason, load_odds, recalibrate, rows_draws, widen_from
from .pools import chunked_map

START_SPAN = 8      # the start holds sizes up to 8x the smallest, as the demo's 16-128
# targets: what the curve measured at each grid step from 2x to 16x past the start (each a case; on the
# sqrt(2) grid half of them lie between doublings, so no rule is favoured by where the targets sit)
TARGET_AT = (2, 2.83, 4, 5.66, 8, 11.3, 16)
MAX_ROUNDS = 6
RULES = ("plan", "double", "prodigy")
CALIBRATION = Path(__file__).with_name("curve_calibration.json")


def _pts(sizes, values, upto):
    ns = [n for n, v in zip(sizes, values) if n <= upto for _ in v]
    ys = [y for n, v in zip(sizes, values) if n <= upto for y in v]
    return np.array(ns, float), np.array(ys, float)


def setup(c: dict, far: float = 4):
    """(start size, target, fewest size reaching it) of one curve with its target `far` times past the
    start, or None when it does not qualify."""
    sizes, means = c["sizes"], [float(np.mean(v)) for v in c["values"]]
    start = max(n for n in sizes if n <= sizes[0] * START_SPAN)
    at = next((i for i, n in enumerate(sizes) if n >= far * start * 0.99), None)
    if at is None:
        return None
    target = means[at]
    if max(m for n, m in zip(sizes, means) if n <= start) >= target:
        return None  # met already: nothing to plan
    fewest = next(n for n, m in zip(sizes, means) if m >= target)
    return start, target, fewest


def _grid_at_least(sizes, q):
    return next((n for n in sizes if n >= q), sizes[-1])


def plan_rule(c, have, target, rng, cal, costs, n_boot, odds=None):
    """The study's plan on the points measured so far: ('label', q) | ('enough', None) | ('stop', None)."""
    sizes, values = c["sizes"], c["values"]
    ns, ys = _pts(sizes, values, have)
    curve = cm.fit_curve(ns, ys, "pow3")
    if curve is None:
        return "unknown", None, {}
    boots = []
    for _ in range(n_boot):
        bs, bv = [], []
        for n, v in zip(sizes, values):
            if n > have:
                break
            pick = v[rng.integers(0, len(v), len(v))]
            bs.append(n)
            bv.append(rng.binomial(c["n_test"], np.clip(pick, 0, 1)) / c["n_test"])
        boots.append(cm.fit_curve(*_pts(bs, bv, have), "pow3", start=curve))
    draws = rows_draws(boots, target, have, widen_from(cal), rng)
    ceil = [q.ceiling for q in boots if q is not None]
    hi = float(np.percentile(ceil, 95)) + widen_from(cal)(math.inf) if ceil else None
    means = {n: float(np.mean(v)) for n, v in zip(sizes, values) if n <= have}
    d = decide(draws, have, target, costs, measured_best=max(means.values()), ceiling_high=hi,
               bad_shape=cm.degenerate(curve), no_stop=dip_reason(means), odds=odds)  # the study's own (plan.make_plan)
    return d["action"], d.get("total"), {**d, "draws": draws}


def follow(c: dict, rule: str, cal: dict, costs: Costs, n_boot: int, far: float = 4, seed: int = 0,
           odds: dict | None = None) -> dict | None:
    s = setup(c, far)
    if s is None:
        return None
    have, target, fewest = s
    sizes = c["sizes"]
    mean = {n: float(np.mean(v)) for n, v in zip(sizes, c["values"])}
    rng = np.random.default_rng([seed, c["id"], zlib.crc32(c["learner"].encode())])
    rounds, prev, why, stated = 0, None, "rounds", []
    while rounds < MAX_ROUNDS:
        if mean[have] >= target:
            why = "reached"
            break
        if have >= sizes[-1]:
            why = "end of curve"
            break
        if rule == "plan":
            action, q, d = plan_rule(c, have, target, rng, cal, costs, n_boot, odds)
            if action == "stop":  # stated: the odds of ever reaching it; happened: does the curve reach it past here
                stated.append({"round": rounds + 1, "say": "stop", "p": d["p_reachable"],
                               "happened": any(m >= target for n, m in mean.items() if n > have)})
            if action == "unknown":  # as the study does: no number, so the rows held again (a doubling)
                q = 2 * have
            elif action != "label":
                why = action
                break
            else:  # the round buys the grid size at or past q: its odds are the draws' share at or under that size
                bought = max(_grid_at_least(sizes, q), next((n for n in sizes if n > have), have))
                p_model = float(np.mean(d["draws"] <= bought))
                stated.append({"round": rounds + 1, "say": "label", "p_said": d["p_reached"], "bought": bought,
                               "p_model": p_model, "p": recalibrate(p_model, odds), "happened": mean[bought] >= target})
        elif rule == "double":
            q = 2 * have
        else:  # prodigy: continue while the last quarter of the rows improved accuracy, adding a third
            quarter = max((n for n in sizes if n <= 0.75 * have), default=sizes[0])
            if prev is not None and mean[have] <= mean[quarter]:
                why = "no gain"
                break
            prev, q = mean[have], have * 4 / 3
        nxt = _grid_at_least(sizes, q)
        if nxt <= have:
            nxt = next((n for n in sizes if n > have), have)
        have, rounds = nxt, rounds + 1
    reached = mean[have] >= target
    return {"id": c["id"], "learner": c["learner"], "rule": rule, "far": far, "target": target, "start": s[0], "fewest": fewest,
            "used": have, "ratio": have / fewest, "rounds": rounds, "reached": bool(reached), "end": why,
            **({"stated": stated} if rule == "plan" else {})}


def _many(args):
    curves, cal, costs, n_boot, odds = args
    return [r for c in curves for far in TARGET_AT for rule in RULES
            for r in [follow(c, rule, cal, costs, n_boot, far, odds=odds)] if r]


def summarise(recs: list[dict]) -> dict:
    out = {}
    for rule in RULES:
        rs = [r for r in recs if r["rule"] == rule]
        if not rs:
            continue
        ok = [r for r in rs if r["reached"]]
        ratio = np.array([r["ratio"] for r in ok]) if ok else np.array([np.nan])
        out[rule] = {"curves": len(rs), "reached": len(ok) / len(rs),
                     "labels_over_fewest_median": float(np.median(ratio)),
                     "labels_over_fewest_p90": float(np.percentile(ratio, 90)),
                     "rounds_median": float(np.median([r["rounds"] for r in rs])),
                     "within_3_rounds": float(np.mean([r["rounds"] <= 3 for r in rs])),
                     "stopped_short": float(np.mean([not r["reached"] and r["end"] in ("enough", "stop", "no gain")
                                                     for r in rs])),
                     "overshoot_median": float(np.median([r["used"] - r["fewest"] for r in ok])) if ok else None}
    return out


BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def fit_odds(recs: list[dict]) -> dict:
    """The isotonic map from the model's p of 'label q' to how often the target was then reached (sklearn's
    IsotonicRegression, clipped to [0, 1]): what plan.recalibrate applies to every p the plan states."""
    from sklearn.isotonic import IsotonicRegression
    xs = [(s["p_model"], float(s["happened"])) for r in recs for s in r.get("stated", []) if s["say"] == "label"]
    p, y = np.array(xs).T
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    stops = [s for r in recs for s in r.get("stated", []) if s["say"] == "stop"]
    return {"x": [round(float(v), 4) for v in iso.X_thresholds_], "y": [round(float(v), 4) for v in iso.y_thresholds_],
            "cases": len(xs), "stop": {"cases": len(stops), "reached": sum(bool(s["happened"]) for s in stops),
                                       "stated": float(np.mean([s["p"] for s in stops])) if stops else None}}


def calibration(recs: list[dict], say: str | None = None, key: str = "p") -> dict:
    """Are the plan's odds right? Every probability it stated (p of reaching the target with the rows the round
    bought, the grid size at or past the plan's q, read from the same draws; for a stop, p of ever reaching
    it) against what the curve then measured: a reliability table (bins
    of p: cases, mean stated, observed rate) and the Brier score. The goal: within +-0.10 in every bin with
    20 cases or more."""
    xs = [(s.get(key, s["p"]), float(s["happened"])) for r in recs for s in r.get("stated", []) if say in (None, s["say"])]
    if not xs:
        return {"cases": 0}
    p, y = np.array(xs).T
    table = []
    for lo, hi in zip(BINS, BINS[1:]):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            table.append({"bin": [lo, hi], "cases": int(m.sum()), "stated": float(p[m].mean()),
                          "observed": float(y[m].mean()), "gap": float(y[m].mean() - p[m].mean())})
    big = [t for t in table if t["cases"] >= 20]
    return {"cases": len(xs), "brier": float(np.mean((p - y) ** 2)), "table": table,
            "within_0.10": all(abs(t["gap"]) <= 0.10 for t in big) if big else None}


def calibration_lines(cal: dict, title: str) -> list[str]:
    if not cal.get("cases"):
        return [f"{title}: no case", ""]
    ok = {True: "met", False: "missed", None: "no bin with 20 cases"}[cal["within_0.10"]]
    lines = [f"{title}: {cal['cases']} stated probabilities, Brier score {cal['brier']:.3f}; +-0.10 in every bin "
             f"with 20+ cases: {ok}", "", "| stated p | cases | mean stated | observed | observed - stated |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {t['bin'][0]:.1f}-{t['bin'][1]:.1f} | {t['cases']} | {t['stated']:.2f} | {t['observed']:.2f} | "
              f"{t['gap']:+.2f} |" for t in cal["table"]]
    return lines + [""]


def run(lcdb: str | None, max_curves: int | None, n_boot: int, out_dir: str, costs: Costs | None = None,
        workers: int | None = None, curves_file: str | None = None, half: str = "report", write_odds: bool = False
        ) -> int:
    """LCDB's reporting half, or with `curves_file` the real text curves in it (results named plan_bench_own).
    write_odds (the choosing half only): fit the correction of the stated odds and write fewshot/plan_odds.json;
    that run states the model's own p. Every other run states the corrected p and shows the model's beside it."""
    if write_odds and (half != "choose" or curves_file):
        from .errors import ConfigError
        raise ConfigError("--write-odds fits the correction on LCDB's choosing half only (--half choose)")
    odds = None if write_odds else load_odds()
    from .curve_bench import LCDB_SDIST, lcdb_curves, load_lcdb
    costs = costs or Costs()
    cal = json.loads(CALIBRATION.read_text())
    t0 = time.time()
    if curves_file:
        curves = json.loads(Path(curves_file).read_text())["curves"]
        for c in curves:
            c["values"] = [np.array(v, float) for v in c["values"]]
    else:
        curves = [c for c in lcdb_curves(load_lcdb(Path(lcdb) if lcdb else LCDB_SDIST)) if c["half"] == half]
    curves = [c for c in curves if setup(c, TARGET_AT[0])]
    if max_curves and len(curves) > max_curves:
        pick = np.random.default_rng(0).choice(len(curves), max_curves, replace=False)
        curves = [curves[i] for i in sorted(pick)]
    recs = chunked_map(_many, curves, workers or min(2, os.cpu_count() or 1), cal, costs, n_boot, odds)
    summ = summarise(recs)
    plan_recs = [r for r in recs if r["rule"] == "plan"]
    calib = {"all": calibration(plan_recs), "label": calibration(plan_recs, "label"), "stop": calibration(plan_recs, "stop"),
             "label_model": calibration(plan_recs, "label", "p_model"), "corrected": bool(odds)}
    if write_odds:
        fitted = {**fit_odds(plan_recs), "source": f"plan-bench --half choose on {len(curves)} curves of LCDB's choosing "
                                                   f"half (B={n_boot}, seed 0)"}
        atomic_write_json(ODDS, fitted)
        print(f"[plan-bench] wrote {ODDS} ({fitted['cases']} cases)")
    what = f"real text curves of {curves_file}" if curves_file else f"LCDB's {'reporting' if half == 'report' else 'choosing'} half"
    own = Path(curves_file).stem if curves_file else ""
    stem = ("plan_bench_own" if own == "own_text_curves" else f"plan_bench_{own}") if curves_file else "plan_bench" if half == "report" else f"plan_bench_choose_r{costs.round:g}"
    res = {"what": f"the labelling plan followed on {what}", "curves": len(curves), "bootstrap": n_boot,
           "costs": costs.__dict__, "protocol": {"start_span": START_SPAN, "target_at": TARGET_AT,
                                                  "max_rounds": MAX_ROUNDS},
           "seconds": round(time.time() - t0, 1), "summary": summ, "calibration": calib, "runs": recs}
    out = Path(out_dir)
    atomic_write_json(out / f"{stem}.json", res)
    lines = [f"# The labelling plan on {what} ({len(curves)} curves, B={n_boot})", "",
             "| rule | reached | labels / fewest, median | 90th pct. | rounds, median | within 3 rounds | stopped short |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for rule, s in summ.items():
        lines.append(f"| {rule} | {s['reached']:.2f} | {s['labels_over_fewest_median']:.2f} | "
                     f"{s['labels_over_fewest_p90']:.2f} | {s['rounds_median']:.0f} | {s['within_3_rounds']:.2f} | "
                     f"{s['stopped_short']:.2f} |")
    said = "corrected (fewshot/plan_odds.json)" if odds else "as the model states them"
    lines += [""] + calibration_lines(calib["label"], f"The odds of 'label q', {said}") + calibration_lines(
        calib["stop"], "The odds behind 'stop'")
    if odds:
        lines += calibration_lines(calib["label_model"], "The odds of 'label q', the model's own before the correction")
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[plan-bench] {out / (stem + '.json')} ({res['seconds']:.0f} s)")
    return 0
