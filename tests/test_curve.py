"""Learning-curve fits: every family recovers known parameters, answers carry how far to trust
them, and the step says when it cannot answer."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fewshot import curve_models as cm
from fewshot.answer import headline, interval_words, verdict
from fewshot.curve import trust_at, widen_at
from fewshot.curve_step import analyse
from fewshot.fileio import atomic_write_json, atomic_write_text

LABELS = ["a", "b", "c", "d"]
TRUE = (0.85, 1.2, 0.6)  # pow3: acc(n) = 0.85 - 1.2 n^-0.6: 0.62 at 16 rows, 0.80 at 200
# A calibration as the benchmark writes it (tests must not depend on the committed one)
CAL = {"rule": "pow3", "source": "test", "ratios": {
    "2": {"widen": 0.01, "curves": 400, "median_abs": 0.006, "p90_abs": 0.03, "coverage": 0.9},
    "4": {"widen": 0.02, "curves": 400, "median_abs": 0.010, "p90_abs": 0.045, "coverage": 0.9},
    "8": {"widen": 0.04, "curves": 400, "median_abs": 0.018, "p90_abs": 0.09, "coverage": 0.9}}}


def _write_runs(objs: Path, method: str, sizes, seeds=(0, 1, 2), n_eval=3000, params=TRUE, seed=0, icl_k=None):
    rng = np.random.default_rng(seed)
    gold = np.arange(n_eval) % len(LABELS)
    for n in sizes:
        for s in seeds:
            acc = float(cm.pow3(icl_k or n, *params))
            right = rng.random(n_eval) < acc
            pred = np.where(right, gold, (gold + 1 + rng.integers(0, 3, n_eval)) % len(LABELS))
            name = f"{method}_{n}_s{s}"
            atomic_write_text(objs / name / "predictions.jsonl", "".join(
                json.dumps({"i": i, "pred": LABELS[p], "label": LABELS[g]}) + "\n" for i, (p, g) in enumerate(zip(pred, gold))))
            atomic_write_json(objs / f"{name}.json", {
                "name": name, "method": method, "train_rows": n, "seed": s, "n_eval": n_eval, "split": "test",
                "metrics": {"labels": LABELS, "accuracy": float(right.mean()), "macro_f1": 0.0}, "seconds": 1.0 + n,
                "icl": {"k": icl_k, "budget": 100, "tokens": 90, "budget_sets_k": icl_k < n, "same_for": []}
                if icl_k else None})


@pytest.mark.parametrize("family,params", [
    ("pow3", (0.85, 1.2, 0.6)),
    ("pow4", (0.9, 3.0, 0.7, 20.0)),
    ("mmf4", (0.2, 0.88, 150.0, 1.1)),
    ("wbl4", (0.9, 0.6, 300.0, 0.6)),
])
def test_each_family_recovers_known_parameters_from_noisy_points(family, params):
    rng = np.random.default_rng(1)
    sizes = np.geomspace(16, 8192, 10).round()
    true = cm.FAMILIES[family].fn(sizes, *params)
    ns = np.repeat(sizes, 5)
    ys = np.repeat(true, 5) + rng.normal(0, 0.002, len(ns))
    p = cm.fit_family(family, ns, ys)
    assert p is not None
    assert p == pytest.approx(params, rel=0.15), (family, p, params)
    fitted = cm.FAMILIES[family].fn(sizes, *p)
    assert np.max(np.abs(fitted - true)) < 0.005


def test_rows_needed_and_a_ceiling():
    curve = cm.Curve("pow3", (("pow3", TRUE),))
    assert cm.rows_needed(curve, 0.8) == pytest.approx(((0.85 - 0.8) / 1.2) ** (-1 / 0.6), rel=1e-4)
    assert math.isinf(cm.rows_needed(curve, 0.9))  # above the ceiling
    assert curve.ceiling == pytest.approx(0.85, abs=1e-3)
    flat = cm.Curve("pow3", (("pow3", (0.9, 0.5, 1e-3)),))
    assert math.isinf(cm.rows_needed(flat, 0.6))  # a flat fit: beyond any count, not an overflow


def test_a_median_rule_keeps_the_members_it_can_fit():
    ns = [16, 32, 64]  # three sizes: the 4-parameter families cannot be fitted, pow3 can
    curve = cm.fit_curve(ns, [cm.pow3(n, *TRUE) for n in ns], "median3")
    assert [f for f, _ in curve.members] == ["pow3"]
    assert cm.fit_curve([16, 32], [0.5, 0.6], "median3") is None


def test_trust_is_read_at_the_next_benchmarked_ratio():
    assert trust_at(CAL, 0.5)["inside"] and trust_at(CAL, 1.5)["ratio"] == 2 and trust_at(CAL, 3.0)["ratio"] == 4
    assert trust_at(CAL, 9.0) is None  # past every benchmarked ratio
    assert widen_at(CAL, 0.8) == 0.0 and widen_at(CAL, 5.0) == 0.04


def test_known_power_law_plus_noise_is_recovered_within_the_interval(tmp_path):
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128, 256])
    res = analyse(tmp_path, [0.8, 0.97], n_boot=60, calibration=CAL)
    f = next(x for x in res["fits"] if x["method"] == "tfidf" and x["metric"] == "accuracy")
    assert f["status"] == "ok" and f["seeds"] == 3 and f["rule"] == "pow3"
    line = {k: np.array(v) for k, v in f["line"].items() if k != "largest"}
    for n in (16, 64, 256):  # the band covers the true curve where it was measured
        i = int(np.argmin(np.abs(line["x"] - n)))
        assert line["low"][i] <= cm.pow3(line["x"][i], *TRUE) <= line["high"][i]
    p = f["params"]["pow3"]
    for n in (16, 64, 256):  # the fitted curve on the true one where it was measured
        assert abs(cm.pow3(n, *p) - cm.pow3(n, *TRUE)) < 0.015
    need = next(r for r in res["labels_needed"] if r["method"] == "tfidf" and r["metric"] == "accuracy"
                and r["target"] == 0.8)
    true_n = ((TRUE[0] - 0.8) / TRUE[1]) ** (-1 / TRUE[2])  # ~200 rows
    assert need["reachable"] and need["low"] <= true_n <= need["high"]
    assert need["ratio"] < 1 and need["enough_data"] and need["trust"]["inside"]
    assert need["benchmarked_to"] == 8 * 256  # the farthest benchmarked ratio times the largest size
    over = next(r for r in res["labels_needed"] if r["metric"] == "accuracy" and r["target"] == 0.97)
    assert not over["reachable"] and over["rows"] is None and over["ceiling"] < 0.97
    bt = next(b for b in res["backtest"] if b["metric"] == "accuracy")
    assert bt["status"] == "ok" and bt["held_out"] == 256 and abs(bt["error"]) < 0.03


def test_an_interval_past_the_benchmark_reads_in_words_not_digits():
    """A curve that plateaus near the target sends some bootstrap answers to 10^10 rows or never:
    the report says how far the benchmark reaches instead of printing that number."""
    r = {"low": 61, "high": 50000000001254, "benchmarked_to": 1024}
    assert interval_words(r) == "[61–beyond 1024]"
    assert interval_words({**r, "high": None}) == "[61–beyond 1024]"
    assert interval_words({**r, "high": 900}) == "[61–900]"
    assert interval_words({"low": None, "high": None}) == "[?–beyond the data]"


def test_an_answer_far_past_the_data_says_not_enough_data(tmp_path):
    """With acc = 0.95 - 1.2 n^-0.6, 0.935 needs ~1500 rows: 12x the largest measured (128), past every
    benchmarked ratio; 0.85 needs ~63 rows, inside the data; 0.91 needs ~310 rows, 2.4x, where the
    benchmark's 90th percentile (0.045 at 4x) clears the bar; with a stricter benchmark it does not."""
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], params=(0.95, 1.2, 0.6))
    res = analyse(tmp_path, [0.85, 0.91, 0.935], n_boot=30, calibration=CAL)
    far = next(r for r in res["labels_needed"] if r["target"] == 0.935 and r["metric"] == "accuracy")
    assert far["reachable"] and far["ratio"] > 8 and far["trust"] is None and not far["enough_data"]
    text = headline(res)
    assert "94%: not enough data to say" in text and "past every ratio benchmarked (8x)" in text
    assert "85%: ~" in text and "inside the measured sizes" in text
    assert "91%: ~" in text and "LCDB at 4x: 90% of 400 curves within 0.045" in text
    strict = {**CAL, "ratios": {**CAL["ratios"], "4": {**CAL["ratios"]["4"], "p90_abs": 0.077}}}
    text = headline(analyse(tmp_path, [0.91], n_boot=10, calibration=strict))
    assert "91%: not enough data to say" in text and "LCDB at 4x: 90% of 400 curves within 0.077" in text


def test_one_seed_says_its_interval_covers_test_rows_only(tmp_path):
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], seeds=(0,))
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], seeds=(0, 1, 2), seed=3)
    res = analyse(tmp_path, [0.7], n_boot=20, calibration=CAL)
    assert res["seeds"] == {"llm_lora": 1, "tfidf": 3}
    lines = headline(res).splitlines()
    assert "one training seed" in next(x for x in lines if x.startswith("- **LLM + LoRA**"))
    assert "one training seed" not in next(x for x in lines if x.startswith("- **TF-IDF"))


def test_level_where_intervals_overlap_ahead_where_they_do_not(tmp_path):
    """Same curve for the LLM and TF-IDF (level everywhere); SetFit far above at every size (the LLM
    is behind): the verdict says so, from the rule, per competitor."""
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], n_eval=400, seed=1)
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], n_eval=400, seed=2)
    _write_runs(tmp_path, "setfit", [16, 32, 64, 128], n_eval=400, params=(0.98, 0.5, 0.6), seed=3)
    res = analyse(tmp_path, [0.7], n_boot=60, calibration=CAL)
    by = {(c["other"], c["rows"]): c["llm_is"] for c in res["comparisons"]}
    assert all(by[("setfit", n)] == "behind" for n in (16, 32, 64, 128))
    assert sum(by[("tfidf", n)] == "level" for n in (16, 32, 64, 128)) >= 3
    short = verdict(res)[-1]
    assert "never ahead of SetFit" in short and "not shown to be worth it" in short
    assert "ahead of TF-IDF" not in short


def test_in_context_points_stand_at_the_demonstrations_shown(tmp_path):
    _write_runs(tmp_path, "llm_icl", [16, 32, 64], seeds=(0,), icl_k=None)
    for n, k in ((16, 16), (32, 20), (64, 24)):
        p = tmp_path / f"llm_icl_{n}_s0.json"
        r = json.loads(p.read_text())
        r["icl"] = {"k": k, "budget": 2560, "tokens": 2400, "budget_sets_k": k < n, "same_for": [128] if n == 64 else []}
        atomic_write_json(p, r)
    res = analyse(tmp_path, [0.7], n_boot=5, calibration=CAL)
    f = next(x for x in res["fits"] if x["method"] == "llm_icl" and x["metric"] == "accuracy")
    assert f["sizes"] == [16, 20, 24]
    line = next(x for x in headline(res).splitlines() if x.startswith("- In-context"))
    assert "16 of 16, 20 of 32, 24 of 64 (= 128)" in line and "sets k at 32, 64 rows" in line


def test_two_sizes_are_not_enough_to_fit(tmp_path):
    _write_runs(tmp_path, "setfit", [16, 64])
    res = analyse(tmp_path, [0.7], n_boot=10, calibration=CAL)
    assert all(f["status"].startswith("not enough sizes") for f in res["fits"])
    assert res["labels_needed"] == []


def test_crossover_of_the_llm_inside_the_data(tmp_path):
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], params=(0.75, 0.6, 0.5))      # fast start, low ceiling
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], params=(0.95, 3.0, 0.6), seed=1)  # slow start, high ceiling
    res = analyse(tmp_path, [0.6], n_boot=40, calibration=CAL)
    c = next(x for x in res["crossovers"] if x["metric"] == "accuracy")
    assert c["other"] == "tfidf" and c["kind"] == "at"
    # the true curves cross where 0.95 - 3 n^-0.6 = 0.75 - 0.6 n^-0.5: about 51 rows
    assert c["low"] <= 51 <= c["high"] and c["ratio"] < 1
    assert "curves cross at ~" in headline(res)


def test_a_series_that_falls_with_more_rows_gets_no_rows_needed_figure(tmp_path):
    """Seen with SetFit at 100-2000 rows (0.83 -> 0.54): the bounded fit went flat and the headline
    said '60%: ~1 rows'. A falling series is named as such; a target met below the smallest size
    measured is said to be met there, not at ~1 row."""
    _write_runs(tmp_path, "setfit", [100, 500, 1000, 2000], seeds=(0,), params=(0.4, -4.3, 0.5))  # 0.83 -> 0.50
    _write_runs(tmp_path, "llm_lora", [100, 500, 1000, 2000], seeds=(0,), params=(0.95, 0.5, 0.5), seed=1)
    res = analyse(tmp_path, [0.6, 0.9], n_boot=20, calibration=CAL)
    f = next(x for x in res["fits"] if x["method"] == "setfit" and x["metric"] == "accuracy")
    assert f["falls"]["best_rows"] == 100 and f["falls"]["at_largest"] < f["falls"]["best"] - 0.1
    assert next(x for x in res["fits"] if x["method"] == "llm_lora" and x["metric"] == "accuracy")["falls"] is None
    low = next(r for r in res["labels_needed"] if r["method"] == "llm_lora" and r["target"] == 0.6
               and r["metric"] == "accuracy")
    assert low["below_measured"]  # 0.95 - 0.5/10 = 0.90 at 100 rows already
    text = headline(res)
    assert "SetFit**: accuracy falls as rows grow" in text and "~1 rows" not in text
    assert "60%: already at the smallest size measured (100 rows)" in text
    assert "no crossover to give (SetFit falls as rows grow)" in text


def test_compute_line_names_where_each_part_ran(tmp_path):
    """The paper-size LLM trains on a GPU and is scored on a CPU: its cost line says both, where a
    first version called all of it GPU time."""
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], seeds=(0,), params=(0.95, 3.0, 0.6), seed=1)
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], seeds=(0,), params=(0.95, 3.0, 0.6), seed=2)
    for p in tmp_path.glob("llm_lora_*.json"):
        r = json.loads(p.read_text())
        r.update(train_device="gpu", scoring={"device": "cpu", "seconds": 5.0})
        atomic_write_json(p, r)
    line = next(x for x in headline(analyse(tmp_path, [0.6], n_boot=10, calibration=CAL)).splitlines()
                if x.startswith("- Compute"))
    assert "LLM + LoRA ~" in line and "GPU train + CPU score (" in line
    tfidf_part = next(x for x in line.split("; ") if "TF-IDF" in x)
    assert " CPU (" in tfidf_part and "GPU" not in tfidf_part


def test_compute_line_says_when_runs_had_one_core_of_the_cpu(tmp_path):
    """Runs side by side each get a lane of the cores: their seconds are a core's, and the line says so."""
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], seeds=(0,), params=(0.95, 3.0, 0.6), seed=1)
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], seeds=(0,), params=(0.95, 3.0, 0.6), seed=2)
    for p in tmp_path.glob("llm_lora_*.json"):
        r = json.loads(p.read_text())
        r.update(train_device="cpu", train_cores=[1], scoring={"device": "cpu", "seconds": 5.0, "cores": [0]})
        atomic_write_json(p, r)
    line = next(x for x in headline(analyse(tmp_path, [0.6], n_boot=10, calibration=CAL)).splitlines()
                if x.startswith("- Compute"))
    llm_part = next(x for x in line.split("; ") if "LLM" in x)
    assert " CPU (1 core) (" in llm_part and " score (" not in llm_part   # one core each: no "train + score" split
    assert " CPU (" in next(x for x in line.split("; ") if "TF-IDF" in x) and "core" not in line.split("; ")[-1]


def test_the_benchmark_checks_study_curves_with_the_reports_own_backtest(tmp_path):
    """curve-bench --objs: a known power law, fitted up to largest/r, predicts the largest size; the
    interval before widening is narrower than after, and both records come from one backtest."""
    from fewshot.curve_bench import RATIOS, text_curves
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128, 256, 512])
    recs = text_curves([str(tmp_path)], "pow3", {2: 0.01, 4: 0.02, 8: 0.04}, n_boot=30)
    assert [r["ratio"] for r in recs] == list(RATIOS) and all(r["method"] == "tfidf" for r in recs)
    two = next(r for r in recs if r["ratio"] == 2)
    assert not two["failed"] and two["largest"] == 512 and two["fit_sizes"] == 5 and two["seeds"] == 3
    assert abs(two["error"]) < 0.03 and two["low"] <= two["predicted"] <= two["high"]
    assert two["covered_calibrated"] or not two["covered"]  # widening never loses coverage
    eight = next(r for r in recs if r["ratio"] == 8)
    assert eight["fit_sizes"] == 3  # 16, 32, 64


def test_series_fitted_side_by_side_give_the_same_numbers(tmp_path):
    """The curve step fits its (method, metric) series in several processes: every number the same
    as one process gives, in the same order."""
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128])
    _write_runs(tmp_path, "encoder", [16, 32, 64, 128])
    one = analyse(tmp_path, [0.8], n_boot=12, calibration=CAL)
    two = analyse(tmp_path, [0.8], n_boot=12, calibration=CAL, workers=2)
    assert [(f["method"], f["metric"]) for f in two["fits"]] == [(f["method"], f["metric"]) for f in one["fits"]]
    assert len(two["fits"]) == 4 and all(f["status"] == "ok" for f in two["fits"])
    assert json.dumps(two, sort_keys=True, default=str) == json.dumps(one, sort_keys=True, default=str)


def test_cost_reads_the_work_a_run_does_and_never_falls_with_more_rows():
    """The encoder's runs sit at a 100-step floor up to 200 rows, so their seconds are flat (and noise made
    them fall): a line in rows read ~100x past them said 0 s. Read in the rows each run passes, a floor's
    cost stays flat below it and grows in proportion past it; a cost that grows with rows keeps its line."""
    from fewshot.curve import cost_table
    from fewshot.results import Point
    gold = np.zeros(4, int)
    pt = lambda m, n, s: Point(m, n, 0, gold, gold, s, "cpu")
    floor = lambda m, n: float(max(4, -(-100 // -(-n // 8))) * n) if m == "encoder" else float(n)  # 4 epochs, 100 steps of 8
    pts = [pt("encoder", n, s) for n, s in [(16, 93.9), (32, 90.2), (64, 82.9), (128, 82.7)]]
    pts += [pt("setfit", n, 5 + 0.3 * n) for n in (16, 32, 64, 128)]
    needed = [{"method": m, "metric": "accuracy", "target": t, "rows": r}
              for m, t, r in [("encoder", 0.7, 32), ("encoder", 0.9, 13808), ("setfit", 0.9, 601)]]
    got = {(c["method"], c["target"]): c["seconds"] for c in cost_table(pts, needed, floor) if c.get("target")}
    assert 80 < got[("encoder", 0.7)] < 95                                     # at the floor: what the runs took
    assert got[("encoder", 0.9)] == pytest.approx(87.4 / 832 * 4 * 13808, rel=0.01)  # 69 floors of work, not 0 s
    assert got[("setfit", 0.9)] == pytest.approx(5 + 0.3 * 601, rel=1e-6)       # a rising line is kept
    in_rows = {(c["method"], c["target"]): c["seconds"] for c in cost_table(pts, needed) if c.get("target")}
    assert in_rows[("encoder", 0.9)] > got[("encoder", 0.7)]                    # without a work model: never below
