"""The morning report, executed headless on small results the test makes."""
import json
import random
from pathlib import Path

import pytest

from fewshot.config import load_config
from fewshot.curve_step import run as curve_step
from fewshot.eval import finish
from fewshot.runs import Run
from fewshot.fileio import append_jsonl
from fewshot.report import render as render_only

LABELS = ["alpha", "beta", "gamma"]


def render(cfg) -> int:
    """What study.sh's report stage runs: the curve step writes the answer, the report reads it."""
    return curve_step(cfg) or render_only(cfg)


def _make_run(cfg, name, size, acc, seed=0, invalid=0, selection="random"):
    rng = random.Random(f"{name}{seed}")
    rows = [{"instruction": "i", "input": "x", "output": LABELS[i % 3]} for i in range(60)]
    pred_path = Path(cfg.eval.out_dir) / name / "predictions.jsonl"
    for i, r in enumerate(rows):
        if i < invalid:
            raw, pred = "I think it is about physics", None
        else:
            pred = r["output"] if rng.random() < acc else LABELS[(i + 1) % 3]
            raw = pred
        append_jsonl(pred_path, {"i": i, "raw": raw, "pred": pred, "label": r["output"]})
    run = Run(name, size, seed if size else None, Path("x") if size else None, "h",
              kind="lora" if size else "zero_shot", selection=selection)
    finish(cfg, run, rows, LABELS, "h", "merged", "sha", name, {"scored": 60}, 1.0)


def _cfg(write_config, tmp_path):
    cfg = load_config(write_config({"eval.bootstrap": 50}))
    return cfg


def test_report_executes_and_writes_every_figure(write_config, tmp_path):
    # a --set value reaches the notebook: it loads the resolved config the step writes, not the file
    cfg = load_config(write_config({"eval.bootstrap": 50}), ["report.targets=[0.55,0.65]"])
    _make_run(cfg, "zero_shot", 0, 0.3, invalid=5)
    for n, acc in ((10, 0.5), (30, 0.7)):
        for s in (0, 1):
            _make_run(cfg, f"llm_train_{n}" + (f"_s{s}" if s else ""), n, acc, seed=s)
    logdir = Path(cfg.train.out_dir) / "llm_train_10"
    logdir.mkdir(parents=True)
    (logdir / "trainer_log.jsonl").write_text("".join(json.dumps({"current_steps": i, "loss": 2 / i}) + "\n"
                                                      for i in range(1, 6)))
    assert render(cfg) == 0
    out = Path(cfg.report.out_dir)
    pngs = {p.name for p in out.glob("*.png")}
    assert {"learning_curve.png", "radar.png", "training_loss.png", "confusion_zero_shot.png",
            "confusion_llm_train_10.png", "confusion_llm_train_30.png"} <= pngs
    for p in out.glob("*.png"):
        assert p.stat().st_size > 10_000  # a real picture, not an empty canvas
    html = (out / "report.html").read_text()
    assert "llm_train_30_s1" in html and "macro_f1" in html  # the table
    assert html.count("data:image/png;base64") >= 5  # the figures inline
    # each confusion matrix drawn once: the report shows the saved file's own bytes, not a second drawing
    import base64
    for name in ("confusion_zero_shot.png", "confusion_llm_train_30.png"):
        assert base64.b64encode((out / name).read_bytes()).decode() in html
    assert "I think it is about physics" in html  # the invalid answers
    assert "Traceback" not in html
    assert json.loads((out / "labels_needed.json").read_text())["targets"] == [0.55, 0.65]
    assert load_config(out / "config.resolved.yaml").hash() == cfg.hash()


def test_report_with_nothing_says_so(write_config, tmp_path):
    cfg = _cfg(write_config, tmp_path)
    assert render(cfg) == 0
    html = (Path(cfg.report.out_dir) / "report.html").read_text()
    assert "No results in" in html and "Traceback" not in html
    assert not list(Path(cfg.report.out_dir).glob("*.png"))


def test_report_with_one_run_and_no_logs(write_config, tmp_path):
    cfg = _cfg(write_config, tmp_path)
    _make_run(cfg, "llm_train_10", 10, 0.6)
    assert render(cfg) == 0
    out = Path(cfg.report.out_dir)
    html = (out / "report.html").read_text()
    assert "No training logs" in html and (out / "learning_curve.png").exists()


def test_report_leads_with_the_answer_and_hides_code(write_config, tmp_path):
    cfg = _cfg(write_config, tmp_path)
    _make_run(cfg, "zero_shot", 0, 0.3)
    for n, acc in ((10, 0.45), (30, 0.62), (90, 0.74), (270, 0.8)):
        for s in (0, 1):
            _make_run(cfg, f"llm_train_{n}" + (f"_s{s}" if s else ""), n, acc, seed=s)
    assert render(cfg) == 0
    html = (Path(cfg.report.out_dir) / "report.html").read_text()
    assert "The answer" in html and "LLM + LoRA" in html
    body = html[html.index("<body"):]
    assert body.index("The answer") < body.index("<img")  # the headline, then the figure
    assert "from fewshot" not in html and "import pandas" not in html     # code cells hidden
    res = json.loads((Path(cfg.report.out_dir) / "labels_needed.json").read_text())
    rows = [r for r in res["labels_needed"] if r["method"] == "llm_lora" and r["metric"] == "accuracy"]
    assert {r["target"] for r in rows} == set(cfg.report.targets)
    assert set(rows[0]) >= {"method", "metric", "target", "rows", "low", "high", "reachable", "extrapolated"}


def test_tables_after_the_headline_are_for_a_person():
    """No NaN, no 1.675495e+08, no 205239-row cost: integers, words where a value does not apply or an
    answer does not stand, intervals as [a–b] (labels_needed.json keeps every raw value)."""
    import numpy as np
    import pandas as pd
    from fewshot.answer import backtest_table, cost_words_table
    from fewshot.results import runs_table, seconds_table
    df = pd.DataFrame({"run": ["zero_shot", "llm_train_16", "tfidf_16_s1"],
                       "method": ["LLM zero-shot (free answer)", "LLM + LoRA", "TF-IDF + LogReg"],
                       "train_rows": [0.0, 16.0, 16.0], "seed": [None, 0.0, 1.0], "accuracy": [0.1, 0.5551, 0.4],
                       "acc_ci95": ["[0.050, 0.150]", "[0.495, 0.605]", None], "macro_f1": [0.05, 0.455, 0.2],
                       "invalid": [200, 0, 0], "k_demos": [np.nan, np.nan, np.nan], "train_s": [np.nan, 167549500.0, 0.3],
                       "score_s": [79.2, 153.5, np.nan], "device": ["cpu", "cpu", "cpu"]})
    runs = runs_table(df)
    text = runs.to_string()
    assert "NaN" not in text and "e+" not in text and "None" not in text
    assert list(runs["rows"]) == [0, 16, 16] and list(runs["seed"]) == ["", "0", "1"]
    assert list(runs["95% interval"]) == ["[0.050–0.150]", "[0.495–0.605]", ""]
    assert list(runs["training"]) == ["", "167549500 s", "<1 s"] and runs["accuracy"][1] == "0.555"
    secs = seconds_table(df)
    assert secs.set_index("method").loc["LLM zero-shot (free answer)", "training"] == "-"
    res = {"labels_needed": [{"method": "tfidf", "metric": "accuracy", "target": 0.6, "enough_data": True},
                             {"method": "tfidf", "metric": "accuracy", "target": 0.9, "enough_data": False}],
           "cost": [{"method": "tfidf", "target": 0.6, "rows": 112, "device": "cpu", "seconds": 0.7},
                    {"method": "tfidf", "target": 0.9, "rows": 205239, "device": "cpu", "seconds": 0.0},
                    {"method": "tfidf", "target": None, "rows": None, "device": "cpu", "seconds_per_run": {16: 1.3}}],
           "backtest": [{"method": "encoder", "metric": "accuracy", "status": "ok", "held_out": 128, "predicted": 0.8007,
                         "measured": 0.8017, "error": -0.001, "covered": True},
                        {"method": "setfit", "metric": "accuracy", "status": "too few sizes"}]}
    cost = cost_words_table(res)
    assert list(cost["rows needed"]) == ["~112", "not enough data to say"]
    assert list(cost["one run, train + score"]) == ["under 1 s", ""] and "205239" not in cost.to_string()
    bt = backtest_table(res)
    assert bt.to_dict("records") == [{"method": "Encoder fine-tune", "held out": "128 rows", "predicted": "0.801",
                                      "measured": "0.802", "error": "-0.001", "measured inside the interval": "yes"}]


def test_report_opens_with_the_plan_and_draws_chosen_rows(write_config):
    """With typical rows beside random ones: the first screen holds the plan before the per-method rows
    needed, selection_curves.png draws both orders, and label_plan.json / label_next.csv are written,
    the next rows taken from train rows no subset used."""
    from fewshot.data import build
    cfg = load_config(write_config({"eval.bootstrap": 50, "data.sizes": [10, 20, 40], "report.curve_bootstrap": 30,
                                    "data.selection": ["random", "typical"], "plan.target": 0.9}))
    man = build(cfg)
    for n, a, b in ((10, 0.45, 0.55), (20, 0.6, 0.7), (40, 0.7, 0.8)):
        _make_run(cfg, f"llm_train_{n}", n, a)
        _make_run(cfg, f"llm_train_{n}_typical", n, b, selection="typical")
    assert render(cfg) == 0
    out = Path(cfg.report.out_dir)
    assert (out / "selection_curves.png").stat().st_size > 10_000
    plan = json.loads((out / "label_plan.json").read_text())
    assert plan["method"] == "llm_lora" and plan["target"] == 0.9 and plan["action"] in ("label", "stop", "unknown")
    lines = (out / "label_next.csv").read_text().splitlines()
    assert lines[0] == "rank,row_id,label,text,ask" and len(lines) > 1
    used = set(man["selection"][plan["selection"]]["orders"]["0"][:40])
    rows = [line.split(",")[1] for line in lines[1:]]
    assert all(r.startswith("train-") and int(r.split("-")[1]) - 1 not in used for r in rows)
    assert plan["next"]["fill"].endswith("label_next.csv") and plan["next"]["save_as"] == "labels/round1.csv"
    html = (out / "report.html").read_text()
    assert "Traceback" not in html
    assert html.index("Plan (LLM + LoRA") < html.index("Next") < html.index("Rows needed, who is ahead")
    assert "bash study.sh" in html and "data.new_labels: [labels/round1.csv]" in html


def test_finish_records_where_the_answers_were_made(write_config):
    # runs scored on another machine (bench/selection_llm.py: a GPU) and finished here say so
    cfg = _cfg(write_config, None)
    rows = [{"instruction": "i", "input": "x", "output": LABELS[i % 3]} for i in range(6)]
    for name, device in (("llm_train_10", None), ("llm_train_20", "gpu (NVIDIA H200)")):
        for i, r in enumerate(rows):
            append_jsonl(Path(cfg.eval.out_dir) / name / "predictions.jsonl",
                         {"i": i, "raw": r["output"], "pred": r["output"], "label": r["output"]})
        out = finish(cfg, Run(name, 10, 0, Path("x"), "h"), rows, LABELS, "h", "per_adapter", "sha", name,
                     {"scored": 6}, 0.0, device=device)
        assert out["metrics"]["accuracy"] == 1.0
        if device:
            assert out["scoring"]["device"] == device and out["scoring"]["dtype"] == "auto"
        else:
            assert out["scoring"]["device"] == "cpu" and out["scoring"]["dtype"] != "auto"


def _as_method(cfg, name: str, method: str) -> None:
    p = Path(cfg.eval.out_dir) / f"{name}.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "method": method}))


def test_first_screen_reads_in_ten_seconds_and_the_report_only_reads(write_config):
    """The verdict once, the plan, the audit line, then the figure; no bare 0..n index in any table. The
    report fits nothing: without the curve step's files it says which command writes them, and after a new
    run it says the answer is stale instead of refitting."""
    import re
    cfg = _cfg(write_config, None)
    for n, a, b in ((10, 0.45, 0.6), (30, 0.62, 0.65), (90, 0.74, 0.68), (270, 0.8, 0.7)):
        for s in (0, 1):
            _make_run(cfg, f"llm_train_{n}" + (f"_s{s}" if s else ""), n, a, seed=s)
            _make_run(cfg, f"tfidf_{n}_s{s}", n, b, seed=s)
            _as_method(cfg, f"tfidf_{n}_s{s}", "tfidf")
    out = Path(cfg.report.out_dir)
    assert render_only(cfg) == 0  # no curve step yet
    html = (out / "report.html").read_text()
    assert "labels_needed.json yet" in html and "python -m fewshot curve" in html and "Traceback" not in html
    assert not (out / "labels_needed.json").exists()
    assert render(cfg) == 0
    html = (out / "report.html").read_text()
    body = html[html.index("<body"):]
    assert body.count("In short") == 1
    assert body.index("The answer") < body.index("In short") < body.index("Plan (") < body.index("Data audit") \
        < body.index("<img")
    assert not re.search(r"<tr>\s*<th>\d+</th>", body), "a table shows a bare 0..n index"
    assert body.count("<table") >= 5
    _make_run(cfg, "llm_train_810", 810, 0.85)
    assert render_only(cfg) == 0
    assert "was written from other results" in (out / "report.html").read_text()


def test_first_screen_gives_the_best_rows_verdict_only_when_it_changes():
    from fewshot.answer import first_screen
    level = [{"other": "tfidf", "rows": n, "llm_is": "level"} for n in (16, 32)]
    ahead = [{"other": "tfidf", "rows": n, "llm_is": "ahead"} for n in (16, 32)]
    res = {"comparisons": level, "comparisons_best": level, "best_selection": {"llm_lora": "typical", "tfidf": "random"},
           "split": "valid", "seeds": {"llm_lora": 3}}
    same = first_screen(res)
    assert same.count("In short") == 1 and "best measured rows" not in same
    changed = first_screen({**res, "comparisons_best": ahead})
    assert changed.count("In short") == 1 and "level with TF-IDF + LogReg" in changed
    assert "best measured rows** (LLM + LoRA: typical, TF-IDF + LogReg: random; picked on the valid split, so " \
           "optimistic) the verdict changes: LLM + LoRA is ahead of TF-IDF + LogReg" in changed
