"""Reading results: everything in objs/ (LLM runs, the zero-shot point, baselines) as records, tables
and per-row outcomes (what the curve step resamples), the training logs, and what the curve step wrote
(read_answer, with a check that it still matches objs/), so the report notebook's cells stay one-liners."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import read_jsonl, sha256_file
from .selection import get as get_strategy

# The original study's published validation numbers (GLM-4-9B-Chat, patent abstracts, 5000 rows).
ORIGINAL_PUBLISHED = pd.DataFrame({
    "train_rows": [100, 500, 1000, 2000],
    "accuracy": [0.411, 0.600, 0.640, 0.684],
    "macro_f1": [0.367, 0.496, 0.567, 0.645],
})
ORIGINAL_SOURCE = "ccdv/patent-classification"

METHOD_NAMES = {"llm_lora": "LLM + LoRA", "llm_icl": "LLM in-context (free answer)",
                "llm_icl_constrained": "LLM in-context (label-constrained)",
                "llm_zero_shot": "LLM zero-shot (free answer)",
                "llm_zero_shot_constrained": "LLM zero-shot (label-constrained)",
                "tfidf": "TF-IDF + LogReg", "encoder": "Encoder fine-tune", "setfit": "SetFit"}
ZERO_SHOT_METHODS = {METHOD_NAMES["llm_zero_shot"], METHOD_NAMES["llm_zero_shot_constrained"]}
ICL_METHODS = ("llm_icl", "llm_icl_constrained")  # placed at k, the demonstrations shown


CURVE_METHODS = ("llm_lora", *ICL_METHODS, "tfidf", "encoder", "setfit")


LLM = "llm_lora"


def load_results(objs_dir: str | Path) -> list[dict]:
    out = []
    for p in sorted(Path(objs_dir).glob("*.json")):
        try:
            r = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and "metrics" in r and "method" in r:
            out.append(r)
    return out


def shown(df: pd.DataFrame):
    """A table as the report shows it: no bare 0..n index column."""
    return df.style.hide(axis="index")


def fingerprint(objs_dir: str | Path) -> str:
    """One hash over every result file in objs/: the curve step records it, the report compares."""
    import hashlib
    h = hashlib.sha256()
    for p in sorted(Path(objs_dir).glob("*.json")):
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()[:16]


ANSWER = "labels_needed.json"  # the curve step's numbers, words' source; in report.out_dir


def read_answer(report_dir: str | Path, objs_dir: str | Path) -> tuple[dict | None, str | None]:
    """What the curve step wrote, and a note when it is missing or older than the results in objs/
    (the report reads; it never fits)."""
    p = Path(report_dir) / ANSWER
    cmd = "python -m fewshot curve --config <the config>"
    if not p.exists():
        return None, f"No {p} yet: run `{cmd}` (study.sh and slurm/finish.sbatch do) to fit the curves and plan."
    res = json.loads(p.read_text(encoding="utf-8"))
    if res.get("objs_fingerprint") != fingerprint(objs_dir):
        return res, (f"{p} was written from other results than {objs_dir}/ holds now: rerun `{cmd}` for "
                     f"answers that match every run below.")
    return res, None


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per run: method, train rows, seed, the headline metrics, invalid answers, split, mode."""
    rows = []
    for r in results:
        m = r["metrics"]
        sel = r.get("selection") or "random"
        rows.append({
            "run": r["name"], "method": get_strategy(sel).display(METHOD_NAMES.get(r["method"], r["method"])),
            "method_key": r["method"], "selection": sel, "train_rows": r["train_rows"],
            "seed": r.get("seed"), "accuracy": m["accuracy"], "macro_precision": m["macro_precision"],
            "macro_recall": m["macro_recall"], "macro_f1": m["macro_f1"],
            "acc_ci95": _fmt_ci(m.get("accuracy_ci95")), "f1_ci95": _fmt_ci(m.get("macro_f1_ci95")),
            "invalid": m.get("invalid", 0), "n_eval": m.get("n"), "split": r.get("split"), "mode": r.get("mode", "-"),
            "k_demos": (r.get("icl") or {}).get("k"),
            "train_s": r.get("train_seconds") if r.get("train_seconds") is not None else r.get("seconds"),
            "score_s": _score_seconds(r), "device": r.get("train_device") or (r.get("scoring") or {}).get("device"),
        })
    df = pd.DataFrame(rows)
    if not df.empty:
        df["seed"] = df["seed"].astype("Int64")  # integers, with <NA> for the zero-shot points
        df = df.sort_values(["method", "train_rows", "seed"], na_position="first").reset_index(drop=True)
    return df


def _score_seconds(r: dict):
    sc = r.get("scoring")
    if not sc:
        return None  # baselines: fit and predict are one figure (train_s)
    return round((sc.get("seconds") or 0) + (sc.get("server_start_s") or 0), 1)


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def curve_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count of accuracy and macro-F1 per (method, train rows)."""
    if df.empty:
        return df
    g = df.groupby(["method", "train_rows"])
    out = g.agg(accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"), macro_f1=("macro_f1", "mean"),
                macro_f1_std=("macro_f1", "std"), seeds=("accuracy", "size")).reset_index()
    return out.fillna({"accuracy_std": 0.0, "macro_f1_std": 0.0})


def _cell(x, fmt: str = "{:.0f}", none: str = "") -> str:
    return none if pd.isna(x) else fmt.format(x)


def _secs(x, none: str = "") -> str:
    text = _cell(x, "{:.0f} s", none)
    return "<1 s" if text not in ("", none) and x < 1 else text


def seconds_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean training and scoring seconds per (method, rows), "-" where a method has no such step."""
    g = df.groupby(["method", "train_rows"])[["train_s", "score_s"]].mean().reset_index()
    return pd.DataFrame({"method": g["method"], "rows": g["train_rows"].astype(int),
                         "training": [_secs(x, "-") for x in g["train_s"]],
                         "scoring": [_secs(x, "-") for x in g["score_s"]]})


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every run, one line each, in the units a reader needs (results_table keeps the raw values)."""
    return pd.DataFrame({
        "run": df["run"], "method": df["method"], "rows": df["train_rows"].astype(int),
        "seed": [_cell(x) for x in df["seed"]], "accuracy": [_cell(x, "{:.3f}") for x in df["accuracy"]],
        "95% interval": df["acc_ci95"].fillna("").str.replace(", ", "–"), "macro-F1": [_cell(x, "{:.3f}") for x in df["macro_f1"]],
        "invalid answers": [_cell(x) for x in df["invalid"]], "demonstrations": [_cell(x) for x in df["k_demos"]],
        "training": [_secs(x) for x in df["train_s"]], "scoring": [_secs(x) for x in df["score_s"]],
        "device": df["device"]})


def invalid_answers(results: list[dict]) -> pd.DataFrame:
    rows = [{"run": r["name"], "answer": a} for r in results for a in r.get("invalid_answers", [])]
    if not rows:
        return pd.DataFrame(columns=["answer", "count", "runs"])
    df = pd.DataFrame(rows)
    return (df.groupby("answer").agg(count=("run", "size"), runs=("run", lambda s: ", ".join(sorted(set(s)))))
            .sort_values("count", ascending=False).reset_index())


def training_logs(saves_dir: str | Path) -> dict[str, pd.DataFrame]:
    """run name -> LLaMA-Factory's trainer_log.jsonl (step, loss, ...) for every run that has one."""
    logs = {}
    for p in sorted(Path(saves_dir).glob("*/trainer_log.jsonl")):
        rows = [r for r in read_jsonl(p) if "loss" in r]
        if rows:
            logs[p.parent.name] = pd.DataFrame(rows)
    return logs


def markdown_table(df: pd.DataFrame) -> str:
    """Accuracy / macro-F1 per method (rows) and training size (columns), mean over seeds with the
    seed spread (min-max accuracy) where there are several: the results table of docs/."""
    if df.empty:
        return ""
    d = df.copy()
    icl = d["method"].str.startswith(METHOD_NAMES["llm_icl"].split(" (")[0])
    sizes = sorted(int(n) for n in d.loc[d["train_rows"] > 0, "train_rows"].unique())
    out = ["| method | " + " | ".join(f"{n} rows" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for method, g in d.groupby("method", sort=False):
        if (g["train_rows"] == 0).all():
            r = g.iloc[0]
            out.append(f"| {method} (0 rows) | {r['accuracy']:.3f} / {r['macro_f1']:.3f}, {int(r['invalid'])} invalid |"
                       + " |" * (len(sizes) - 1))
            continue
        cells = []
        for n in sizes:
            h = g[g["train_rows"] == n]
            if h.empty:
                cells.append("")
                continue
            acc, f1 = h["accuracy"].mean(), h["macro_f1"].mean()
            cell = f"{acc:.3f} / {f1:.3f}"
            if len(h) > 1:
                cell += f" ({h['accuracy'].min():.3f}-{h['accuracy'].max():.3f}, {len(h)} seeds)"
            else:
                cell += f" {h['acc_ci95'].iloc[0]}"
            if icl.loc[h.index].any() and pd.notna(h["k_demos"].iloc[0]):
                cell += f", k={int(h['k_demos'].iloc[0])}"
            if h["invalid"].sum():
                cell += f", {int(h['invalid'].mean())} invalid"
            cells.append(cell)
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------- the runs, as per-row outcomes (the curve step's input)

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


def load_points(objs_dir: str | Path, results: list[dict] | None = None) -> tuple[list[Point], list[str]]:
    """Every scored run with a learning curve, as per-row outcomes (what the curve step resamples), and the
    labels. results: objs/'s records, where the caller has read them already."""
    pts, labels = [], []
    for r in load_results(objs_dir) if results is None else results:
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
        pts.append(Point(get_strategy(r.get("selection")).key(r["method"]), n, r.get("seed"), pred, gold, sum(secs) if secs else None,
                         train_dev if score_dev == train_dev else f"{train_dev} train + {score_dev} score"))
    return pts, labels
