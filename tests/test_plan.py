"""The labelling plan's arithmetic on known curves, the shape check that withholds a number from an
ill-behaved curve, and the saving a strategy is credited with."""
import json
import math

import numpy as np
import pytest

from fewshot import curve_models as cm
from fewshot.answer import headline, summary
from fewshot.curve import shape
from fewshot.curve_step import analyse
from fewshot.fileio import atomic_write_json
from fewshot.plan import Costs, decide, expected_cost, rows_draws
from test_curve import CAL, _write_runs

KNOWN = cm.Curve("pow3", (("pow3", (0.9, 1.0, 0.5)),))  # 0.8 at exactly (1 / 0.1)^2 = 100 rows


def test_rows_needed_of_the_known_curve():
    assert cm.rows_needed(KNOWN, 0.8) == pytest.approx(100, rel=1e-6)


def test_a_sure_curve_buys_exactly_what_it_needs():
    """Every draw says 100 rows: falling short costs a round (100) plus the rest, so the plan buys the
    first grid size at or past 100, reaches the target with probability 1, and expects that total."""
    draws = rows_draws([KNOWN] * 50, 0.8, 32, lambda r: 0.0, np.random.default_rng(0))
    assert np.allclose(draws, 100)
    p = decide(draws, 32, 0.8, Costs(1.0, 100.0, 8.0))
    assert p["action"] == "label" and 100 <= p["total"] <= 110 and p["label_more"] == p["total"] - 32
    assert p["p_reached"] == 1.0 and p["median_total"] == p["total"]


def test_expected_cost_is_labels_now_plus_a_round_where_short():
    draws = np.array([50.0, 150.0])
    # q = 100: 68 labels now; half the draws short by 50: (100 + 50) / 2 = 75
    assert expected_cost(100, 32, draws, Costs(1.0, 100.0)) == pytest.approx(68 + 75)


def test_a_dear_round_buys_more_at_once_than_a_cheap_one():
    draws = np.linspace(80, 240, 200)
    cheap = decide(draws, 32, 0.8, Costs(1.0, 0.0, 8.0))
    dear = decide(draws, 32, 0.8, Costs(1.0, 1000.0, 8.0))
    assert dear["total"] > cheap["total"] and dear["p_reached"] >= 0.95 > cheap["p_reached"]


def test_enough_stop_and_unknown():
    draws = np.full(50, 100.0)
    fit_only = decide(draws, 128, 0.8, Costs())  # the fit says 128 suffice, no measurement says so: a small round
    assert fit_only["action"] == "label" and fit_only["total"] <= 1.1 * 128
    assert decide(draws, 32, 0.8, Costs(), measured_best=0.81)["action"] == "enough"
    never = np.r_[np.full(47, np.inf), np.full(3, 100.0)]  # 6% of the draws ever get there
    stop = decide(never, 32, 0.8, Costs(), ceiling_high=0.76)
    assert stop["action"] == "stop" and "unlikely to reach 80%" in stop["why"] and "0.760" in stop["why"]
    # reachable but past one round (8x): buy enough now that two more rounds of 8x can get there, not 34 rows
    far = decide(np.full(50, 10_000.0), 32, 0.8, Costs(max_ratio=8))
    assert far["action"] == "label" and 10_000 / 64 <= far["total"] <= 256 and far["p_reached"] == 0.0
    odd = decide(draws, 32, 0.8, Costs(), bad_shape="accuracy dips")
    assert odd["action"] == "unknown" and odd["why"].startswith("not enough data to say")


def test_the_benchmark_error_widens_the_draws_past_the_data():
    tight = rows_draws([KNOWN] * 400, 0.8, 32, lambda r: 0.0, np.random.default_rng(1))
    wide = rows_draws([KNOWN] * 400, 0.8, 32, lambda r: 0.04 if r > 1 else 0.0, np.random.default_rng(1))
    assert np.ptp(tight) == 0 and np.percentile(wide, 95) > 1.5 * np.percentile(wide, 5)


def test_a_dipping_curve_gets_no_number(tmp_path):
    """Measured 0.60, 0.45, 0.70, 0.75 on 3000 rows: the dip at 32 is far past test-row noise, so
    no power law is extrapolated through it: no rows-needed figure and no plan number."""
    dip = {16: 0.60, 32: 0.45, 64: 0.70, 128: 0.75}
    assert shape(list(dip), list(dip.values()), 3000)["kind"] == "dips"
    assert shape([16, 32, 64], [0.60, 0.59, 0.70], 200) is None  # within noise on 200 rows
    rng = np.random.default_rng(0)
    gold = np.arange(3000) % 4
    for n, acc in dip.items():
        right = rng.random(3000) < acc
        pred = np.where(right, gold, (gold + 1) % 4)
        name = f"llm_lora_{n}"
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.jsonl").write_text("".join(
            json.dumps({"i": i, "pred": "abcd"[p], "label": "abcd"[g]}) + "\n" for i, (p, g) in enumerate(zip(pred, gold))))
        atomic_write_json(tmp_path / f"{name}.json", {"name": name, "method": "llm_lora", "train_rows": n, "seed": 0,
                                                      "n_eval": 3000, "split": "test",
                                                      "metrics": {"labels": list("abcd"), "accuracy": float(right.mean())}})

    class P:
        method, target, cost_per_label, cost_per_round, max_ratio = "llm_lora", 0.8, 1.0, 100.0, 8.0
    res = analyse(tmp_path, [0.8], n_boot=10, calibration=CAL, plan_cfg=P)
    r = next(x for x in res["labels_needed"] if x["metric"] == "accuracy")
    assert not r["enough_data"] and r["shape"]["kind"] == "dips"
    assert "accuracy dips from 0.6" in headline(res) and "not enough data to say" in headline(res)
    assert res["plan"]["action"] == "unknown" and "not enough data to say" in summary(res)


def _with_selection(objs, method, sel):
    for p in objs.glob(f"{method}_*_s*.json"):
        r = json.loads(p.read_text())
        new = r["name"].replace(f"{method}_", f"{method}_sel{sel}_")
        (objs / r["name"]).rename(objs / new)
        p.unlink()
        atomic_write_json(objs / f"{new}.json", {**r, "name": new, "selection": sel})


def test_a_strategy_that_reaches_the_target_sooner_is_credited_with_its_saving(tmp_path):
    """Random rows follow 0.85 - 1.2 n^-0.6 (0.75 at ~63 rows); typical rows the same curve at twice the
    rows (0.75 at ~31): half the labels saved, an interval above 0, and the plan uses the better order."""
    sizes = [16, 32, 64, 128]
    _write_runs(tmp_path, "tfidf", [2 * n for n in sizes], seed=1)
    _with_selection(tmp_path, "tfidf", "typical")
    for p in tmp_path.glob("tfidf_sel*.json"):  # shown n rows, measured as 2n random ones
        r = json.loads(p.read_text())
        atomic_write_json(p, {**r, "train_rows": r["train_rows"] // 2})
    _write_runs(tmp_path, "tfidf", sizes, seed=2)

    class P:
        method, target, cost_per_label, cost_per_round, max_ratio = "tfidf", 0.75, 1.0, 100.0, 8.0
    res = analyse(tmp_path, [0.75], n_boot=40, calibration=CAL, plan_cfg=P)
    sv = next(x for x in res["savings"] if x["target"] == 0.75)
    assert sv["status"] == "saves" and 0.35 < sv["saving"] < 0.65 and sv["low"] > 0
    assert res["best_selection"]["tfidf"] == "typical" and res["plan"]["selection"] == "typical"
    assert "Choosing rows (typical) for TF-IDF + LogReg, 75%: saves" in summary(res)
    assert math.isfinite(sv["rows_random"]) and sv["rows_chosen"] < sv["rows_random"]


def _measured(objs, method: str, accs: dict, selection: str = "random", n_eval: int = 400):
    """One seed's runs measuring exactly these accuracies on n_eval rows of 4 labels."""
    gold = np.arange(n_eval) % 4
    for n, acc in accs.items():
        right = np.arange(n_eval) < round(acc * n_eval)
        pred = np.where(right, gold, (gold + 1) % 4)
        name = f"{method}_{n}" + ("" if selection == "random" else f"_{selection}")
        (objs / name).mkdir()
        (objs / name / "predictions.jsonl").write_text("".join(
            json.dumps({"i": i, "pred": "abcd"[p], "label": "abcd"[g]}) + "\n" for i, (p, g) in enumerate(zip(pred, gold))))
        atomic_write_json(objs / f"{name}.json", {"name": name, "method": method, "train_rows": n, "seed": 0,
                                                  "selection": selection, "n_eval": n_eval, "split": "test",
                                                  "metrics": {"labels": list("abcd"), "accuracy": float(right.mean())}})


def test_a_step_fit_and_a_one_seed_noisy_selection_get_no_stop(tmp_path):
    """A real case: typical rows measured 0.28 / 0.590 / 0.540 / 0.575 (one seed, 400 rows), a mean over the
    sizes a little above random's, and a pow3 fit that is a step with its ceiling under 70%; random rows rise.
    The plan keeps random rows (no saving measurable), and the typical curve alone never says "stop"."""
    _measured(tmp_path, "llm_lora", {16: 0.40, 32: 0.46, 64: 0.52, 128: 0.58})
    _measured(tmp_path, "llm_lora", {16: 0.28, 32: 0.59, 64: 0.54, 128: 0.575}, "typical")

    class P:
        method, target, cost_per_label, cost_per_round, max_ratio = "llm_lora", 0.7, 1.0, 500.0, 8.0
    res = analyse(tmp_path, [0.7], n_boot=40, calibration=CAL, plan_cfg=P)
    assert res["best_selection"]["llm_lora"] == "typical"
    assert res["plan"]["selection"] == "random" and "no saving is measurable" in res["plan"]["selection_why"]
    assert res["plan"]["action"] == "label"
    grown = analyse(tmp_path, [0.7], n_boot=40, calibration=CAL, plan_cfg=P, grown="typical")["plan"]
    assert grown["selection"] == "typical" and grown["action"] == "unknown", grown
    assert "step" in grown["why"] or "dips" in grown["why"]
    fit = cm.fit_curve([16, 32, 64, 128], [0.28, 0.59, 0.54, 0.575])
    assert "step" in cm.degenerate(fit) and cm.degenerate(cm.fit_curve([16, 32, 64, 128], [0.40, 0.46, 0.52, 0.58])) is None


def test_the_reliability_table_and_brier_score_of_stated_odds():
    from fewshot.plan_bench import calibration
    said = [{"say": "label", "p": 0.2, "happened": k < 2} for k in range(10)]   # said 0.2, happened 0.2
    said += [{"say": "label", "p": 0.8, "happened": k < 3} for k in range(30)]  # said 0.8, happened 0.1
    said += [{"say": "stop", "p": 0.05, "happened": True}]
    cal = calibration([{"stated": said}], "label")
    assert cal["cases"] == 40 and [t["cases"] for t in cal["table"]] == [10, 30]
    assert cal["table"][0]["gap"] == pytest.approx(0.0) and cal["table"][1]["gap"] == pytest.approx(-0.7)
    assert cal["within_0.10"] is False  # the 30-case bin misses; the 10-case bin is too small to judge
    assert cal["brier"] == pytest.approx((10 * 0.2 * 0.8 + 3 * 0.2 ** 2 + 27 * 0.8 ** 2) / 40)
    assert calibration([{"stated": said}], "stop")["table"][0]["observed"] == 1.0


def test_the_stated_odds_are_the_model_s_read_through_the_correction():
    """decide states the corrected p (plan_odds.json's isotonic map) and keeps the model's own beside it."""
    from fewshot.plan import recalibrate
    odds = {"x": [0.0, 0.5, 1.0], "y": [0.3, 0.4, 0.6]}
    draws = np.array([100.0] * 50 + [10_000.0] * 50)  # half the draws reach the target at 100 rows
    plain = decide(draws, 64, 0.8, Costs(round=1e6, max_ratio=2.0))
    fixed = decide(draws, 64, 0.8, Costs(round=1e6, max_ratio=2.0), odds=odds)
    assert plain["total"] == fixed["total"]  # the correction changes what is said, not what is bought
    assert fixed["p_model"] == plain["p_reached"] and fixed["p_reached"] == pytest.approx(recalibrate(plain["p_reached"], odds))
    assert recalibrate(0.25, odds) == pytest.approx(0.35) and recalibrate(0.25, None) == 0.25


def test_the_plan_asks_for_no_more_rows_than_there_are():
    draws = np.full(100, 5000.0)  # every draw needs 5000 rows
    capped = decide(draws, 64, 0.8, Costs(), max_total=100)
    assert capped["action"] == "label" and capped["total"] <= 100 and capped["p_reached"] == 0.0
    none_left = decide(draws, 64, 0.8, Costs(), max_total=64)
    assert none_left["action"] == "unknown" and "0 unlabelled rows left" in none_left["why"]


def test_stop_is_said_only_where_the_benchmark_backs_it():
    never = np.full(100, math.inf)  # no draw ever reaches the target
    odds = {"x": [0.0, 1.0], "y": [0.0, 1.0]}
    assert decide(never, 64, 0.9, Costs())["action"] == "stop"  # the arithmetic alone
    wrong = decide(never, 64, 0.9, Costs(), odds={**odds, "stop": {"cases": 9, "reached": 9, "stated": 0.02}})
    assert wrong["action"] == "unknown" and "9 of 9 such stops reached the target" in wrong["why"]
    backed = decide(never, 64, 0.9, Costs(), odds={**odds, "stop": {"cases": 40, "reached": 2, "stated": 0.02}})
    assert backed["action"] == "stop"
