"""The labelling loop followed for real: `python -m fewshot plan-replay --config C` runs the study's own
steps round by round on a fully labelled set, as a person would: the plan asks (report/label_next.csv),
the replay fills the asked rows' labels from the source (and only those: the person's part), adds the
file to data.new_labels, and reruns data, training and scoring, curve. It stops when the target is
measured, the plan says stop or cannot say, or after --rounds rounds.

Each round's record: what the plan said (q, p of reaching the target with those rows, median total),
the accuracy then measured at the new size, and the labels used; with --curves (a dense curve of the
same method on the same set, the format of bench/results/own_text_curves.json) also the fewest rows that
reach the target on it. plan.method's steps run: the cheap baselines in seconds on a CPU, the LLM's
train + eval for llm_lora (a GPU, or a night). Written to <report.out_dir>/plan_replay.json."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .config import Config, override
from .fileio import atomic_write_json, read_json
from .manifest import TRAIN_ROWS
from .rounds import parse_id


def _steps(cfg: Config) -> None:
    """data, the plan method's training and scoring, curve: the study's steps (each skips finished work)."""
    from .data import build
    build(cfg)
    if cfg.plan.method == "llm_lora":
        from . import eval as ev, train
        train.run_all(cfg)
        ev.run_all(cfg)
    else:
        from .baselines import run_all
        run_all(override(cfg, [f"baselines.methods=[{cfg.plan.method}]"]))
    from .curve_step import run as curve_run
    curve_run(cfg)


def _fill(cfg: Config, ask_csv: Path, out: Path) -> int:
    """The person's part: the asked rows' labels, read from the source's train rows."""
    truth = read_json(Path(cfg.data.out_dir) / TRAIN_ROWS)
    df = pd.read_csv(ask_csv, dtype=str, keep_default_na=False)
    df["label"] = [truth[parse_id(r)[1]]["label"] for r in df["row_id"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return len(df)


def _measured(cfg: Config, plan: dict, size: int) -> float | None:
    """The plan method's mean accuracy at one size of the plan's selection (every seed scored there)."""
    from .curve import key
    from .results import load_points
    pts, _ = load_points(cfg.eval.out_dir)
    accs = [float((p.pred == p.gold).mean()) for p in pts
            if p.method == key(plan["method"], plan.get("selection")) and p.n == size]
    return sum(accs) / len(accs) if accs else None


def _fewest(curves: str | None, target: float) -> int | None:
    """The fewest rows whose mean reaches the target on a dense curve: FILE[:LEARNER] (its first curve, or
    the one named, e.g. bench/results/own_text_curves.json:tfidf@debian)."""
    if not curves:
        return None
    import json
    path, _, learner = curves.partition(":")
    for c in json.loads(Path(path).read_text())["curves"]:
        if learner and c["learner"] != learner:
            continue
        means = [sum(v) / len(v) for v in c["values"]]
        return next((n for n, m in zip(c["sizes"], means) if m >= target), None)
    return None


def run(cfg: Config, rounds: int = 4, curves_file: str | None = None) -> int:
    if cfg.plan.pool:
        from .errors import ConfigError
        raise ConfigError("plan-replay follows the plan on a labelled set's own train rows; plan.pool rows have no "
                          "labels to reveal")
    t0 = time.time()
    labels_dir = Path(cfg.report.out_dir) / "replay_labels"
    files = list(cfg.data.new_labels)
    record = []
    for k in range(rounds + 1):
        cur = override(cfg, [f"data.new_labels={files}"]) if files else cfg
        _steps(cur)
        plan = read_json(Path(cfg.report.out_dir) / "label_plan.json")
        if record:  # the size the round reached (an ask is cut short where the pool runs out)
            record[-1]["reached_size"] = plan["have"]
            record[-1]["measured"] = _measured(cur, plan, plan["have"])
            record[-1]["reached"] = bool(record[-1]["measured"] is not None and record[-1]["measured"] >= cfg.plan.target)
        said = {x: plan.get(x) for x in ("action", "selection", "have", "label_more", "total", "p_reached",
                                         "median_total", "why")}
        print(f"[plan-replay] round {k}: {plan['have']} rows held; plan: {plan['why']}", flush=True)
        if plan["action"] != "label" or k == rounds:
            record.append({**said, "round": k, "final": True})
            break
        f = labels_dir / f"round{k + 1}.csv"
        _fill(cur, Path(cfg.report.out_dir) / "label_next.csv", f)
        files.append(str(f))
        record.append({**said, "round": k, "file": str(f)})
    used = record[-1]["have"]
    out = {"config": cfg.path, "method": cfg.plan.method, "target": cfg.plan.target, "rounds": record,
           "labels_used": used, "fewest_on_dense_curve": _fewest(curves_file, cfg.plan.target),
           "seconds": round(time.time() - t0, 1)}
    atomic_write_json(Path(cfg.report.out_dir) / "plan_replay.json", out)
    for r in record:
        m = r.get("measured")
        print(f"[plan-replay] round {r['round']}: {r['action']} {r.get('label_more') or ''} (p {r.get('p_reached')}, "
              f"median total {r.get('median_total')}) -> measured {'-' if m is None else f'{m:.3f}'}")
    print(f"[plan-replay] labels used {used}; fewest on the dense curve {out['fewest_on_dense_curve']}; "
          f"{Path(cfg.report.out_dir) / 'plan_replay.json'}")
    return 0
