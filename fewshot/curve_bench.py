"""How far to trust a rows-needed answer: `python -m fewshot curve-bench` runs the project's own
curve estimator (curve_models) on real learning curves and scores its extrapolations.

Curves: LCDB 1.0 (Mohr et al., ECML 2022; PyPI sdist `lcdb==0.1.0`, fetched by
bench/curve_bench_setup.sh, read offline from the tarball): one curve per (OpenML id, learner) of
outer seed 0, test accuracy per training size on a sqrt(2) grid and per inner seed (a different
training subset of the same split, as the study's data seeds are). Plus the project's own text
curves: every objs/ folder given with --objs.

For each curve and ratio r in RATIOS, the estimator sees the sizes up to largest/r and predicts
the largest. Scored: the error of the predicted accuracy (median, mean, 90th percentile of the
absolute error, bias), the error of rows needed in log2 units for the accuracy the largest size
reached, and how often the 90% bootstrap interval (inner seeds resampled, each point's test
accuracy redrawn binomially: the study's rows-and-seeds bootstrap) covers the measured value.

LCDB is split by OpenML id before any result is seen (SPLIT_RULE): the rule, and the widening
that calibrates the intervals, are chosen on the 'choose' half; every reported figure is from the
'report' half. The chosen rule and the reporting half's errors go to fewshot/curve_calibration.json,
which the curve step reads to say, with each answer, how far past the data it is and how far
such answers were off."""
from __future__ import annotations

import hashlib
import math
import os
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np

from . import curve_models as cm
from .errors import FewshotError
from .fileio import atomic_write_json
from .pools import chunked_map

RATIOS = (2, 4, 8)
CANDIDATES = tuple(cm.RULES)
LCDB_SDIST = Path("bench/lcdb/lcdb-0.1.0.tar.gz")
LCDB_MEMBER = "lcdb-0.1.0/lcdb/database-accuracy.csv"
MIN_SIZES = 9          # so that largest/8 still leaves 3 sizes to fit on a sqrt(2) grid
COVER = 0.90           # the interval's nominal coverage
CALIBRATION = Path(__file__).with_name("curve_calibration.json")
SPLIT_RULE = "sha256('lcdb:<openmlid>') first byte even -> choose, odd -> report"
# Fixed before the run: the rule with the lowest 90th-percentile absolute error at 4x on the choosing
# half (ties: lower median), since "90% of answers within 0.05" is the bar an answer must clear.
CHOICE_RATIO = 4


def half(openmlid: int) -> str:
    return "choose" if hashlib.sha256(f"lcdb:{openmlid}".encode()).digest()[0] % 2 == 0 else "report"


# ---------------------------------------------------------------- the curves

def load_lcdb(sdist: Path = LCDB_SDIST):
    """LCDB's accuracy table as one row per (id, learner, size, inner seed) of outer seed 0."""
    import pandas as pd
    if not sdist.exists():
        raise FewshotError(f"{sdist} not found: run bash bench/curve_bench_setup.sh first (downloads the LCDB sdist)")
    with tarfile.open(sdist) as tar:
        df = pd.read_csv(tar.extractfile(LCDB_MEMBER),
                         usecols=["openmlid", "learner", "size_train", "size_test", "outer_seed", "inner_seed",
                                  "score_test"])
    return df[(df.outer_seed == 0) & df.score_test.notna()]


def lcdb_curves(df) -> list[dict]:
    """One dict per curve: id, learner, half, sizes, per-size arrays of inner-seed accuracies, test rows."""
    out = []
    for (oid, learner), g in df.groupby(["openmlid", "learner"], sort=True):
        by = {int(n): s.score_test.to_numpy(float) for n, s in g.groupby("size_train")}
        if len(by) < MIN_SIZES:
            continue
        out.append({"id": int(oid), "learner": learner, "half": half(int(oid)), "sizes": sorted(by),
                    "values": [by[n] for n in sorted(by)], "n_test": int(g.size_test.median())})
    return out


# ---------------------------------------------------------------- one curve, one ratio

def _points(sizes, values, upto):
    ns = [n for n, v in zip(sizes, values) if n <= upto for _ in v]
    ys = [y for n, v in zip(sizes, values) if n <= upto for y in v]
    return np.array(ns, float), np.array(ys, float)


def _true_rows(sizes, means, target):
    return next(n for n, m in zip(sizes, means) if m >= target)


def score_curve(c: dict, rules=CANDIDATES, boot_rule: str | None = None, n_boot: int = 0, seed: int = 0) -> list[dict]:
    """Point errors of every rule at every ratio; with boot_rule, its 90% bootstrap interval too."""
    sizes, values = c["sizes"], c["values"]
    means = [float(np.mean(v)) for v in values]
    largest, measured = sizes[-1], means[-1]
    rng = np.random.default_rng([seed, c["id"], zlib.crc32(c["learner"].encode())])
    out = []
    for r in RATIOS:
        ns, ys = _points(sizes, values, largest / r)
        if len(np.unique(ns)) < cm.MIN_SIZES:
            continue
        fams = {f: cm.fit_family(f, ns, ys) for f in ("pow3", "pow4", "mmf4", "wbl4", "last1")}
        for rule in rules:
            members = tuple((f, fams[f]) for f in cm.RULES[rule] if fams[f] is not None)
            rec = {"id": c["id"], "learner": c["learner"], "half": c["half"], "ratio": r, "rule": rule,
                   "fit_sizes": len(np.unique(ns)), "largest": largest, "measured": measured}
            if not members:
                out.append({**rec, "failed": True})
                continue
            curve = cm.Curve(rule, members)
            pred = float(curve(largest))
            need = cm.rows_needed(curve, measured)
            true = _true_rows(sizes, means, measured)
            rec.update(failed=False, predicted=pred, error=pred - measured,
                       log2_rows_error=(math.log2(need / true) if math.isfinite(need) else math.inf))
            if rule == boot_rule and n_boot:
                draws = []
                for _ in range(n_boot):
                    bs, bv = [], []
                    for n, v in zip(sizes, values):
                        if n > largest / r:
                            break
                        pick = v[rng.integers(0, len(v), len(v))]
                        bs.append(n)
                        bv.append(rng.binomial(c["n_test"], np.clip(pick, 0, 1)) / c["n_test"])
                    q = cm.fit_curve(*_points(bs, bv, largest), rule=rule, start=curve)
                    if q is not None:
                        draws.append(float(q(largest)))
                if draws:
                    lo, hi = np.percentile(draws, [50 * (1 - COVER), 100 - 50 * (1 - COVER)])
                    rec.update(low=float(lo), high=float(hi))
            out.append(rec)
    return out


def _score_many(args):
    curves, rules, boot_rule, n_boot = args
    return [rec for c in curves for rec in score_curve(c, rules, boot_rule, n_boot)]


def run_parallel(curves, rules, boot_rule=None, n_boot=0, workers=None) -> list[dict]:
    return chunked_map(_score_many, curves, workers or min(4, os.cpu_count() or 1), rules, boot_rule, n_boot)


# ---------------------------------------------------------------- summaries

def summary(recs: list[dict]) -> dict:
    ok = [r for r in recs if not r["failed"]]
    err = np.array([r["error"] for r in ok])
    log2 = np.array([r["log2_rows_error"] for r in ok])
    out = {"curves": len(recs), "failed": len(recs) - len(ok)}
    if len(ok):
        a = np.abs(err)
        out.update(median_abs=float(np.median(a)), mean_abs=float(a.mean()), p90_abs=float(np.percentile(a, 90)),
                   bias=float(err.mean()), log2_rows_median_abs=_pct(np.abs(log2), 50),
                   log2_rows_p90_abs=_pct(np.abs(log2), 90), rows_not_reached=int(np.sum(~np.isfinite(log2))))
    iv = [r for r in ok if "low" in r]
    if iv:
        out["coverage"] = float(np.mean([r["low"] <= r["measured"] <= r["high"] for r in iv]))
        out["intervals"] = len(iv)
    return out


def _pct(xs, q) -> float:
    """Percentile where some values are infinite (a target the fit never reaches): inf if it lands there."""
    v = float(np.percentile(np.where(np.isfinite(xs), xs, 1e300), q))
    return math.inf if v >= 1e299 else v


def widening(recs: list[dict]) -> float:
    """The least w such that [low - w, high + w] covers COVER of these curves: the family's own
    error, which a bootstrap of one family cannot see (learned on the choosing half only)."""
    iv = [r for r in recs if not r["failed"] and "low" in r]
    if not iv:
        return 0.0
    excess = [max(0.0, r["low"] - r["measured"], r["measured"] - r["high"]) for r in iv]
    return float(np.quantile(excess, COVER))


def covered_after(recs: list[dict], w: float) -> float | None:
    iv = [r for r in recs if not r["failed"] and "low" in r]
    return float(np.mean([r["low"] - w <= r["measured"] <= r["high"] + w for r in iv])) if iv else None


def choose_rule(recs: list[dict]) -> str:
    scores = {}
    for rule in CANDIDATES:
        s = summary([r for r in recs if r["rule"] == rule and r["ratio"] == CHOICE_RATIO and r["half"] == "choose"])
        if "p90_abs" in s:
            scores[rule] = (s["p90_abs"], s["median_abs"])
    return min(scores, key=scores.get)


# ---------------------------------------------------------------- the project's own text curves

def text_curves(objs_dirs: list[str], rule: str, widen: dict, n_boot: int) -> list[dict]:
    """The study's runs as curves (one per objs/ folder and method), fitted up to largest/r and
    checked by the curve step's own backtest (row-and-seed bootstrap)."""
    from .curve import backtest  # the curve step's own backtest, on its own reader's points
    from .results import CURVE_METHODS, load_points
    out = []
    for d in objs_dirs:
        points, labels = load_points(d)
        for m in CURVE_METHODS:
            pts = [p for p in points if p.method == m]
            if not pts:
                continue
            rng = np.random.default_rng(0)
            boot_rows = [rng.integers(0, len(pts[0].gold), len(pts[0].gold)) for _ in range(n_boot)]
            for r in RATIOS:
                b = backtest(pts, len(labels), "accuracy", boot_rows, 0, rule, lambda _ratio, w=widen.get(r, 0.0): w, r)
                rec = {"objs": d, "method": m, "ratio": r, "rule": rule, "largest": b["held_out"],
                       "fit_sizes": b["fit_sizes"], "seeds": b["seeds"], "failed": b["status"] != "ok"}
                if b["status"] == "ok":
                    lo, hi = b["low_raw"], b["high_raw"]
                    rec.update(measured=b["measured"], predicted=b["predicted"], error=b["error"],
                               low=math.nan if lo is None else lo, high=math.nan if hi is None else hi,
                               covered=b["covered_raw"], covered_calibrated=b["covered"])
                out.append(rec)
    return out


# ---------------------------------------------------------------- the command

def _fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown(res: dict, lcdb: bool = True) -> str:
    lines = [f"Chosen rule: **{res['rule']}** (lowest 90th-percentile absolute error at {CHOICE_RATIO}x on the "
             f"choosing half). Split: {SPLIT_RULE}.", ""]
    for h in ("choose", "report") if lcdb else ():
        lines += [f"### LCDB, {h} half ({res['curves'][h]} curves)", "",
                  "| ratio | rule | median abs. error | mean | 90th pct. | bias | log2 rows error, median / 90th | "
                  "fits failed |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for row in res["table"]:
            if row["half"] == h:
                s = row["summary"]
                lines.append(f"| {row['ratio']}x | {row['rule']} | {_fmt(s.get('median_abs'))} | {_fmt(s.get('mean_abs'))} "
                             f"| {_fmt(s.get('p90_abs'))} | {_fmt(s.get('bias'), 4)} | "
                             f"{_fmt(s.get('log2_rows_median_abs'), 2)} / {_fmt(s.get('log2_rows_p90_abs'), 2)} | "
                             f"{s['failed']} |")
        lines.append("")
    lines += [] if not lcdb else ["### 90% intervals of the chosen rule", "",
              "| ratio | widening w (learned on choose) | coverage choose: before / after | "
              "coverage report: before / after |", "|---:|---:|---:|---:|"]
    for c in res.get("calibration", []):
        lines.append(f"| {c['ratio']}x | {c['widen']:.4f} | {_fmt(c['choose_before'])} / {_fmt(c['choose_after'])} | "
                     f"{_fmt(c['report_before'])} / {_fmt(c['report_after'])} |")
    if res.get("text"):
        lines += ["", "### The project's own text curves (accuracy)", "",
                  "| objs | method | ratio | sizes fitted | seeds | predicted | measured | error | "
                  "90% interval | covered: before / after |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for t in res["text"]:
            if t["failed"]:
                lines.append(f"| {t['objs']} | {t['method']} | {t['ratio']}x | {t['fit_sizes']} | {t['seeds']} | "
                             f"not enough sizes | | | | |")
            else:
                lines.append(f"| {t['objs']} | {t['method']} | {t['ratio']}x | {t['fit_sizes']} | {t['seeds']} | "
                             f"{t['predicted']:.3f} | {t['measured']:.3f} | {t['error']:+.3f} | "
                             f"[{t['low']:.3f}, {t['high']:.3f}] | {t['covered']} / {t['covered_calibrated']} |")
    return "\n".join(lines)


def run_text_only(objs_dirs: list[str], n_boot: int, out: str) -> int:
    """The study's own curves alone, with the rule and widening of the committed calibration."""
    import json
    cal = json.loads(CALIBRATION.read_text())
    widen = {int(r): v["widen"] for r, v in cal["ratios"].items()}
    text = text_curves(objs_dirs, cal["rule"], widen, n_boot)
    res = {"rule": cal["rule"], "calibration_source": cal["source"], "n_boot": n_boot, "text": text}
    atomic_write_json(Path(out) / "curve_bench_text.json", res)
    md = markdown({"text": text, "rule": cal["rule"]}, lcdb=False)
    (Path(out) / "curve_bench_text.md").write_text(md + "\n")
    print(md)
    return 0


def run(sdist: str | None, objs_dirs: list[str], max_curves: int | None, n_boot: int, out: str,
        write_calibration: bool = False, text_only: bool = False) -> int:
    if text_only:
        return run_text_only(objs_dirs, n_boot, out)
    t0 = time.time()
    curves = lcdb_curves(load_lcdb(Path(sdist) if sdist else LCDB_SDIST))
    if max_curves:  # a reproducible subset per half, for a quick look
        rng = np.random.default_rng(0)
        keep = []
        for h in ("choose", "report"):
            hs = [c for c in curves if c["half"] == h]
            keep += [hs[i] for i in sorted(rng.choice(len(hs), min(max_curves, len(hs)), replace=False))]
        curves = keep
    n = {h: sum(c["half"] == h for c in curves) for h in ("choose", "report")}
    print(f"[curve-bench] {len(curves)} LCDB curves (choose {n['choose']}, report {n['report']}), "
          f"{time.time() - t0:.0f} s to load", flush=True)
    recs = run_parallel(curves, CANDIDATES)
    rule = choose_rule(recs)
    print(f"[curve-bench] point errors: {time.time() - t0:.0f} s; chosen rule {rule}", flush=True)
    boot = run_parallel(curves, (rule,), boot_rule=rule, n_boot=n_boot)
    print(f"[curve-bench] intervals ({n_boot} draws): {time.time() - t0:.0f} s", flush=True)
    table = [{"half": h, "ratio": r, "rule": ru, "summary": summary(
        [x for x in recs if x["half"] == h and x["ratio"] == r and x["rule"] == ru])}
        for h in ("choose", "report") for r in RATIOS for ru in CANDIDATES]
    cal, widen = [], {}
    for r in RATIOS:
        ch = [x for x in boot if x["half"] == "choose" and x["ratio"] == r]
        rp = [x for x in boot if x["half"] == "report" and x["ratio"] == r]
        w = widening(ch)
        widen[r] = w
        cal.append({"ratio": r, "widen": w, "choose_before": summary(ch).get("coverage"),
                    "choose_after": covered_after(ch, w), "report_before": summary(rp).get("coverage"),
                    "report_after": covered_after(rp, w), "report": summary(rp)})
    text = text_curves(objs_dirs, rule, widen, n_boot) if objs_dirs else []
    res = {"rule": rule, "split": SPLIT_RULE, "curves": n, "n_boot": n_boot, "ratios": list(RATIOS),
           "table": table, "calibration": cal, "text": text, "seconds": round(time.time() - t0)}
    atomic_write_json(Path(out) / "curve_bench.json", res)
    cal_path = CALIBRATION if write_calibration else Path(out) / "curve_calibration.json"
    atomic_write_json(cal_path, {
        "rule": rule, "source": f"LCDB 1.0 accuracy curves, report half ({n['report']} curves, outer seed 0); "
                                f"split {SPLIT_RULE}", "cover": COVER,
        "ratios": {str(c["ratio"]): {"widen": round(c["widen"], 5), "curves": c["report"]["curves"] - c["report"]["failed"],
                                     "median_abs": round(c["report"]["median_abs"], 4),
                                     "p90_abs": round(c["report"]["p90_abs"], 4),
                                     "coverage": round(c["report_after"], 3)} for c in cal}, "n_boot": n_boot})
    md = markdown(res)
    (Path(out) / "curve_bench.md").write_text(md + "\n")
    print(md)
    print(f"[curve-bench] {out}/curve_bench.json, {out}/curve_bench.md, {cal_path}")
    return 0
