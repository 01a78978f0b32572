"""The curve step (`python -m fewshot curve`): fit every learning curve (`curve`), decide the
labelling plan (`plan`), rank the rows to label next (`label_next`) and write every file once:
report/labels_needed.json (all the numbers), label_plan.json (the plan, with the next step as
commands), label_next.csv/.jsonl (the rows, their ask kept in asks/). The report only reads them."""
from __future__ import annotations

from pathlib import Path

from . import curve
from .answer import summary, table
from .fileio import atomic_write_json
from .results import ANSWER, fingerprint, load_results
from .plan import make_plan


def analyse(objs_dir: str | Path, targets: list[float], n_boot: int = 200, seed: int = 0,
            calibration: dict | None = None, plan_cfg=None, grown: str | None = None, available: tuple | None = None,
            workers: int = 1, work=None) -> dict:
    """Every fit, answer, comparison and (given the config's plan section) the plan, as one dict.
    grown / available: see plan.make_plan; work: see curve.cost_table."""
    f = curve.fit(objs_dir, targets, n_boot, seed, calibration, workers, work)
    if plan_cfg is not None:
        f.res["plan"] = make_plan(plan_cfg, f, grown, available)
    return f.res


def write(cfg, res: dict, out_dir) -> list[Path]:
    """label_next.csv/.jsonl (the plan's rows, its ask kept in asks/), label_plan.json (the plan, with the
    next step as commands) and labels_needed.json (everything)."""
    from .label_next import rank
    from .rounds import next_step
    out = Path(out_dir)
    paths = [out / ANSWER]
    if res.get("plan"):
        # "unknown" ranks the rows held again (a doubling): the way to say more is more labels
        nxt = rank(cfg, res["plan"], out) if res["plan"].get("action") in ("label", "unknown") else None
        res["plan"]["label_next"] = nxt.name if nxt else None
        if nxt:
            res["plan"]["next"] = next_step(cfg, nxt, sum(1 for _ in nxt.with_suffix(".jsonl").open()))
        plan = {**res["plan"], "savings": [x for x in res.get("savings", []) if x["method"] == res["plan"]["method"]],
                "split": res.get("split"), "curve_rule": res.get("rule")}
        atomic_write_json(out / "label_plan.json", plan)
        paths += [out / "label_plan.json"] + ([nxt, nxt.with_suffix(".jsonl")] if nxt else [])
    res["objs_fingerprint"] = fingerprint(cfg.eval.out_dir)  # the report checks it matches objs/ still
    atomic_write_json(paths[0], res)
    return paths


def run(cfg) -> int:
    from .devices import usable_cpus
    from .rounds import grown, rows_available
    from .runs import rows_passed
    if not load_results(cfg.eval.out_dir):
        print(f"[curve] no results in {cfg.eval.out_dir}/ yet: nothing to fit (run train.sh, eval.sh, baselines first)")
        return 0
    res = analyse(cfg.eval.out_dir, cfg.report.targets, cfg.report.curve_bootstrap, plan_cfg=cfg.plan, grown=grown(cfg),
                  available=rows_available(cfg), workers=len(usable_cpus()),
                  work=lambda method, n: rows_passed(cfg, method, n))
    paths = write(cfg, res, cfg.report.out_dir)
    print(table(res))
    print(summary(res))
    print(f"[curve] {', '.join(str(p) for p in paths)}")
    return 0
