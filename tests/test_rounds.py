"""The labelling round trip: label_next.csv filled in and brought back through data.new_labels grows the
plan's selection by exactly the filled rows, in order, and changes nothing finished; bad label files
fail naming the row; a Label Studio export reads back."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from fewshot.config import load_config
from fewshot.errors import DataError
from fewshot.fileio import read_json
from fewshot.prompt import strip_input
from fewshot.rounds import parse_id, read_filled

PLAN = {"method": "llm_lora", "target": 0.8, "action": "label"}


def _truth(cfg) -> list[dict]:
    return read_json(Path(cfg.data.out_dir) / "train_rows.json")


def _ask(cfg, sel: str, have: int, q: int) -> pd.DataFrame:
    from fewshot.label_next import rank
    path = rank(cfg, {**PLAN, "selection": sel, "have": have, "label_more": q}, cfg.report.out_dir)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _fill(cfg, df: pd.DataFrame, path: Path, blank: set[int] = frozenset()) -> Path:
    """The person's part: each row's label from the source (the labels the train split holds)."""
    truth = _truth(cfg)
    df = df.copy()
    df["label"] = [("" if k in blank else truth[parse_id(r)[1]]["label"]) for k, r in enumerate(df["row_id"])]
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def _inputs(cfg, name: str) -> list[str]:
    return [r["input"] for r in json.loads((Path(cfg.data.out_dir) / f"{name}.json").read_text())]


def _tfidf(cfg) -> dict[str, float]:
    """Run the cheap baseline; every run record's modification time."""
    from fewshot import baselines
    baselines.run_all(cfg)
    return {p.name: p.stat().st_mtime_ns for p in Path(cfg.eval.out_dir).glob("tfidf_*.json")}


@pytest.mark.parametrize("sel", ["random", "typical", "uncertain"])
def test_two_rounds_grow_only_the_asked_selection_by_exactly_the_filled_rows(write_config, tmp_path, sel):
    from fewshot.data import build
    from fewshot.runs import run_names
    extra = {"data.sizes": [10, 30], "data.selection": ["random", "typical", "uncertain"],
             "data.selection_methods": ["llm_lora", "tfidf"], "baselines.methods": ["tfidf"]}
    cfg = load_config(write_config(extra))
    man0 = build(cfg)
    before = _tfidf(cfg)
    ask = _ask(cfg, sel, 30, 12)
    assert list(ask.columns) == ["rank", "row_id", "label", "text", "ask"] and (ask["label"] == "").all()
    assert (Path(cfg.report.out_dir) / "label_next.jsonl").read_text().count("\n") == 12
    r1 = _fill(cfg, ask, tmp_path / "labels" / "round1.csv", blank={3, 7})  # partly filled: 10 of 12 used

    cfg1 = load_config(write_config({**extra, "data.new_labels": [str(r1)]}))
    man1 = build(cfg1)
    name = lambda n: f"llm_train_{n}" + ("" if sel == "random" else f"_{sel}")
    filled = [t for k, t in enumerate(ask["text"]) if k not in {3, 7}]
    grown = _inputs(cfg1, name(40))
    assert grown[:30] == _inputs(cfg1, name(30)) and len(grown) == 40
    assert [strip_input(g) for g in grown[30:]] == filled  # exactly the filled rows, in the ask's rank order
    for f, meta in man0["files"].items():  # nothing finished changes: the train step keys on these hashes
        assert man1["files"][f]["sha256"] == meta["sha256"], f
    other = [s for s in ("random", "typical", "uncertain") if s != sel]
    assert not any(f"llm_train_40{'' if s == 'random' else '_' + s}" in man1["files"] for s in other)
    assert {n for _, n, _, s in run_names(cfg1) if s == sel} == {10, 30, 40}
    assert {n for _, n, _, s in run_names(cfg1) if s != sel} == {10, 30}
    (rec,) = man1["rounds"]
    assert rec["from"] == 30 and rec["to"] == 40 and rec["blank"] == 2 and rec["labels_unlike_source"] == 0
    after = _tfidf(cfg1)
    assert {k: after[k] for k in before} == before  # no finished run scored again
    assert set(after) - set(before) == {f"tfidf_40{'' if sel == 'random' else '_' + sel}_s0.json"}

    ask2 = _ask(cfg1, sel, 40, 8)  # round 2 continues from the 40 rows held
    assert not set(ask2["row_id"]) & set(ask["row_id"][[k for k in range(12) if k not in {3, 7}]])
    r2 = _fill(cfg1, ask2, tmp_path / "labels" / "round2.csv")
    cfg2 = load_config(write_config({**extra, "data.new_labels": [str(r1), str(r2)]}))
    man2 = build(cfg2)
    assert _inputs(cfg2, name(48))[:40] == grown and [r["to"] for r in man2["rounds"]] == [40, 48]
    with pytest.raises(DataError, match="order the asks were made"):
        build(load_config(write_config({**extra, "data.new_labels": [str(r2), str(r1)]})))


def test_pool_rows_join_the_train_rows_with_the_labels_given(write_config, tmp_path):
    from fewshot.data import build
    pool = tmp_path / "pool.csv"
    pool.write_text("text\n" + "".join(f"new document number {i} about cheese and bread\n" for i in range(20)))
    extra = {"data.sizes": [10, 30], "plan.pool": str(pool)}
    cfg = load_config(write_config(extra))
    build(cfg)
    ask = _ask(cfg, "random", 30, 5)
    assert all(r.startswith("pool-") for r in ask["row_id"])
    ask["label"] = "Physics"
    f = tmp_path / "r1.csv"
    ask.to_csv(f, index=False)
    cfg1 = load_config(write_config({**extra, "data.new_labels": [str(f)]}))
    build(cfg1)
    rows = json.loads((Path(cfg1.data.out_dir) / "llm_train_35.json").read_text())
    assert [r["output"] for r in rows[30:]] == ["Physics"] * 5
    assert [strip_input(r["input"]) for r in rows[30:]] == list(ask["text"])
    nxt = _ask(cfg1, "random", 35, 5)  # the pool rows labelled are not asked for again
    assert not set(nxt["row_id"]) & set(ask["row_id"])


@pytest.fixture
def asked(write_config, tmp_path):
    from fewshot.data import build
    cfg = load_config(write_config({"data.sizes": [10, 30]}))
    build(cfg)
    ask = _ask(cfg, "random", 30, 6)
    return cfg, ask, lambda df, name="bad.csv": (df.to_csv(tmp_path / name, index=False), tmp_path / name)[1]


def _build_with(write_config, path):
    from fewshot.data import build
    return build(load_config(write_config({"data.sizes": [10, 30], "data.new_labels": [str(path)]})))


def test_bad_label_files_fail_naming_the_row(write_config, asked):
    cfg, ask, save = asked
    truth = _truth(cfg)
    good = ask.assign(label=[truth[parse_id(r)[1]]["label"] for r in ask["row_id"]])
    cases = [
        (good.assign(label=["cheese"] + list(good["label"][1:])), r"row 2: label 'cheese' .* is not one of"),
        (good.assign(label=""), r"no label filled in \(6 rows"),
        (pd.concat([good, good.iloc[[1]]]), r"row 8: row_id .* given twice \(first at row 3\)"),
        (good.assign(text=["edited text"] + list(good["text"][1:])), r"row 2: the text no longer matches its row_id"),
    ]
    unasked = good.copy()
    i = next(i for i in range(len(truth)) if f"train-{i + 1}-" not in " ".join(ask["row_id"]))
    from fewshot.rounds import row_id
    unasked.loc[0, ["row_id", "text"]] = [row_id("train", i, truth[i]["text"]), truth[i]["text"]]
    cases.append((unasked, r"row 2: row_id train-.* was not asked for"))
    for df, msg in cases:
        with pytest.raises(DataError, match=msg):
            _build_with(write_config, save(df))
    with pytest.raises(DataError, match="file not found"):
        _build_with(write_config, Path(save(good)).with_name("missing.csv"))


def test_a_label_studio_export_reads_back(write_config, asked, tmp_path):
    """Label Studio's JSON export of the CSV imported as tasks: data holds the columns, the last annotation
    not cancelled holds the choice; a task nobody labelled stays blank."""
    cfg, ask, _ = asked
    truth = _truth(cfg)
    tasks = []
    for k, r in ask.iterrows():
        lab = truth[parse_id(r["row_id"])[1]]["label"]
        anns = [] if k == 5 else [
            {"id": 1, "was_cancelled": True, "result": [{"type": "choices", "from_name": "label", "to_name": "text",
                                                        "value": {"choices": ["wrong"]}}]},
            {"id": 2, "was_cancelled": False, "result": [{"type": "choices", "from_name": "label", "to_name": "text",
                                                         "value": {"choices": [lab]}}]}]
        tasks.append({"id": 100 + k, "data": {c: r[c] for c in ask.columns}, "annotations": anns})
    f = tmp_path / "export.json"
    f.write_text(json.dumps(tasks))
    rows = read_filled(f)
    assert [x.label for x in rows[:5]] == [truth[parse_id(r)[1]]["label"] for r in ask["row_id"][:5]]
    assert rows[5].label is None
    man = _build_with(write_config, f)
    assert man["rounds"][0]["to"] == 35 and man["rounds"][0]["blank"] == 1


def test_the_plan_says_what_to_fill_and_what_to_run(write_config, tmp_path):
    from fewshot.plan import words
    from fewshot.rounds import next_step
    cfg = load_config(write_config())
    nxt = next_step(cfg, "report/label_next.csv", 12)
    line = words({"action": "label", "target": 0.8, "label_more": 12, "total": 42, "p_reached": 0.6,
                  "median_total": 50, "selection": "typical", "next": nxt}, "LLM + LoRA")
    assert "`report/label_next.csv`" in line and "labels/round1.csv" in line
    assert f"CONFIG={cfg.path} bash study.sh" in line and "data.new_labels: [labels/round1.csv]" in line


def test_plan_replay_follows_the_plan_through_the_steps(write_config, tmp_path):
    """Two rounds of the loop on synthetic rows with TF-IDF: each round's rows are the plan's ask filled from
    the source, and the next round holds exactly the rows the plan asked for."""
    from fewshot.plan_replay import run
    cfg = load_config(write_config({"data.sizes": [10, 20, 40, 80], "data.synthetic_rows": 1500,
                                    "baselines.methods": ["tfidf"], "baselines.seeds": [0, 1],
                                    "plan.method": "tfidf", "plan.target": 0.97, "report.curve_bootstrap": 30}))
    assert run(cfg, rounds=2) == 0
    rec = json.loads((Path(cfg.report.out_dir) / "plan_replay.json").read_text())
    first = rec["rounds"][0]
    assert first["have"] == 80 and first["action"] in ("label", "enough", "unknown")
    if first["action"] == "label":
        assert first["reached_size"] == first["total"] and rec["rounds"][1]["have"] == first["total"]
        assert first["measured"] is not None and Path(first["file"]).exists()
        man = json.loads((Path(cfg.data.out_dir) / "manifest.json").read_text())
        assert man["rounds"][0]["to"] == first["total"]
