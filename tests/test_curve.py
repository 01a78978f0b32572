"""Learning-curve fits: a known power law is recovered, and the step says when it cannot answer."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fewshot.curve import analyse, fit, power_law, rows_needed
from fewshot.fileio import atomic_write_json, atomic_write_text

LABELS = ["a", "b", "c", "d"]
TRUE = (0.85, 1.2, 0.6)  # acc(n) = 0.85 - 1.2 n^-0.6: 0.62 at 16 rows, 0.80 at 200


def _write_runs(objs: Path, method: str, sizes, seeds=(0, 1, 2), n_eval=3000, params=TRUE, seed=0):
    rng = np.random.default_rng(seed)
    gold = np.arange(n_eval) % len(LABELS)
    for n in sizes:
        for s in seeds:
            acc = float(power_law(n, *params))
            right = rng.random(n_eval) < acc
            pred = np.where(right, gold, (gold + 1 + rng.integers(0, 3, n_eval)) % len(LABELS))
            name = f"{method}_{n}_s{s}"
            atomic_write_text(objs / name / "predictions.jsonl", "".join(
                json.dumps({"i": i, "pred": LABELS[p], "label": LABELS[g]}) + "\n" for i, (p, g) in enumerate(zip(pred, gold))))
            atomic_write_json(objs / f"{name}.json", {
                "name": name, "method": method, "train_rows": n, "seed": s, "n_eval": n_eval, "split": "test",
                "metrics": {"labels": LABELS, "accuracy": float(right.mean()), "macro_f1": 0.0}, "seconds": 1.0 + n})


def test_fit_recovers_a_noiseless_power_law():
    ns = [10, 20, 40, 80, 160]
    p = fit(ns, [power_law(n, *TRUE) for n in ns])
    assert p == pytest.approx(TRUE, rel=1e-3)
    assert rows_needed(p, 0.8) == pytest.approx(((0.85 - 0.8) / 1.2) ** (-1 / 0.6), rel=1e-3)
    assert math.isinf(rows_needed(p, 0.9))  # above the ceiling
    assert math.isinf(rows_needed((0.9, 0.5, 1e-3), 0.6))  # a flat fit: beyond any count, not an overflow


def test_known_power_law_plus_noise_is_recovered_within_the_interval(tmp_path):
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128, 256])
    res = analyse(tmp_path, [0.8, 0.97], n_boot=60)
    f = next(x for x in res["fits"] if x["method"] == "tfidf" and x["metric"] == "accuracy")
    assert f["status"] == "ok"
    for k, true in zip("abc", TRUE):  # each parameter inside its bootstrap interval
        lo, hi = f[f"{k}_ci95"]
        assert lo <= true <= hi, (k, lo, true, hi)
    for n in (16, 64, 256):  # and the fitted curve on the true one where it was measured
        assert abs(power_law(n, f["a"], f["b"], f["c"]) - power_law(n, *TRUE)) < 0.015
    need = next(r for r in res["labels_needed"] if r["method"] == "tfidf" and r["metric"] == "accuracy"
                and r["target"] == 0.8)
    true_n = ((TRUE[0] - 0.8) / TRUE[1]) ** (-1 / TRUE[2])  # ~200 rows
    assert need["reachable"] and need["low"] <= true_n <= need["high"]
    assert need["low"] <= need["rows"] <= need["high"] and not need["extrapolated"]
    over = next(r for r in res["labels_needed"] if r["metric"] == "accuracy" and r["target"] == 0.97)
    assert not over["reachable"] and over["rows"] is None and over["ceiling"] < 0.97  # above the ceiling
    bt = next(b for b in res["backtest"] if b["metric"] == "accuracy")
    assert bt["status"] == "ok" and bt["held_out"] == 256 and abs(bt["error"]) < 0.03


def test_two_sizes_are_not_enough_to_fit(tmp_path):
    _write_runs(tmp_path, "setfit", [16, 64])
    res = analyse(tmp_path, [0.7], n_boot=10)
    assert all(f["status"].startswith("not enough sizes") for f in res["fits"])
    assert res["labels_needed"] == []


def test_crossover_of_the_llm_and_extrapolation_flag(tmp_path):
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], params=(0.75, 0.6, 0.5))      # fast start, low ceiling
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], params=(0.95, 3.0, 0.6), seed=1)  # slow start, high ceiling
    res = analyse(tmp_path, [0.6, 0.9], n_boot=40)
    c = next(x for x in res["crossovers"] if x["metric"] == "accuracy")
    assert c["other"] == "tfidf" and c["kind"] == "at"
    # the true curves cross where 0.95 - 3 n^-0.6 = 0.75 - 0.6 n^-0.5: about 51 rows
    assert c["low"] <= 51 <= c["high"]
    far = next(r for r in res["labels_needed"] if r["method"] == "llm_lora" and r["metric"] == "accuracy"
               and r["target"] == 0.9)
    assert far["reachable"] and far["extrapolated"]  # ~920 rows, past 4 x 128


def test_a_series_that_falls_with_more_rows_gets_no_rows_needed_figure(tmp_path):
    """Seen with SetFit at 100-2000 rows (0.83 -> 0.54): the bounded fit went flat and the headline
    said '60%: ~1 rows'. A falling series is named as such; a target met below the smallest size
    measured is said to be met there, not at ~1 row."""
    from fewshot.curve import headline
    _write_runs(tmp_path, "setfit", [100, 500, 1000, 2000], seeds=(0,), params=(0.4, -4.3, 0.5))  # 0.83 -> 0.50
    _write_runs(tmp_path, "llm_lora", [100, 500, 1000, 2000], seeds=(0,), params=(0.95, 0.5, 0.5), seed=1)
    res = analyse(tmp_path, [0.6, 0.9], n_boot=20)
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
    from fewshot.curve import headline
    _write_runs(tmp_path, "llm_lora", [16, 32, 64, 128], seeds=(0,), params=(0.95, 3.0, 0.6), seed=1)
    _write_runs(tmp_path, "tfidf", [16, 32, 64, 128], seeds=(0,), params=(0.95, 3.0, 0.6), seed=2)
    for p in tmp_path.glob("llm_lora_*.json"):
        r = json.loads(p.read_text())
        r.update(train_device="gpu", scoring={"device": "cpu", "seconds": 5.0})
        atomic_write_json(p, r)
    line = next(x for x in headline(analyse(tmp_path, [0.6], n_boot=10)).splitlines() if x.startswith("- Compute"))
    assert "LLM + LoRA ~" in line and "GPU train + CPU score (" in line
    tfidf_part = next(x for x in line.split("; ") if "TF-IDF" in x)
    assert " CPU (" in tfidf_part and "GPU" not in tfidf_part
