"""`python -m fewshot <step> --config PATH [--set key=value ...]`: the one entry point that the
shell scripts and notebooks call."""
from __future__ import annotations

import argparse
import sys

from .config import load_config, save_resolved
from .errors import FewshotError

RESOLVED_NEXT_TO = {"data": lambda c: c.data.out_dir, "train": lambda c: c.train.out_dir,
                    "eval": lambda c: c.eval.out_dir, "baselines": lambda c: c.eval.out_dir,
                    "sweep": lambda c: c.sweep.out_dir}
STEPS = ("data", "train", "eval", "baselines", "curve", "report", "sweep", "bench", "curve-bench", "plan-bench", "plan-replay", "estimate")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fewshot", description=__doc__)
    ap.add_argument("step", choices=STEPS)
    ap.add_argument("name", nargs="?", help="bench: which benchmark (client, serving, train, study, profile); sweep: setfit_head "
                    "(SetFit's head) or encoder (the encoder fine-tune's recipe) instead of the LLM recipes")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override any config key, e.g. --set data.sizes=[100,500]")
    ap.add_argument("--only", action="append", default=[], metavar="RUN",
                    help="train/eval: only these run names (repeatable)")
    ap.add_argument("--shard", metavar="I/N", help="train/eval: every N-th run from the I-th (0-based), to spread "
                    "one study over N jobs that share the project folder (e.g. a Slurm array)")
    ap.add_argument("--objs", action="append", default=[], metavar="DIR",
                    help="curve-bench: also score the study's own curves in this objs/ folder (repeatable)")
    ap.add_argument("--lcdb", help="curve-bench: the LCDB sdist (default bench/lcdb/lcdb-0.1.0.tar.gz)")
    ap.add_argument("--half", default="report", choices=["report", "choose"],
                    help="plan-bench: LCDB's half to follow (choose: where plan.cost_per_round was chosen)")
    ap.add_argument("--cost-per-round", type=float, default=None,
                    help="plan-bench: the cost of one more round, in labels (default plan.cost_per_round)")
    ap.add_argument("--curves", help="plan-bench: a file of real learning curves to follow instead of LCDB's; plan-replay: a dense curve "
                    "of the same method and set, for the fewest rows that reach the target "
                    "(bench/own_text_curves.py writes one)")
    ap.add_argument("--rounds", type=int, default=4, help="plan-replay: the most labelling rounds to follow")
    ap.add_argument("--max-curves", type=int, default=None, help="curve-bench: LCDB curves per half (default all)")
    ap.add_argument("--boot", type=int, default=20, help="curve-bench: bootstrap draws per interval")
    ap.add_argument("--out", default="bench/results", help="curve-bench: where its table goes")
    ap.add_argument("--text-only", action="store_true",
                    help="curve-bench: only the --objs curves, with the committed calibration (no LCDB)")
    ap.add_argument("--write-calibration", action="store_true",
                    help="curve-bench: also replace fewshot/curve_calibration.json, which the curve step reads")
    ap.add_argument("--write-odds", action="store_true",
                    help="plan-bench --half choose: fit the correction of the plan's stated odds (fewshot/plan_odds.json)")
    ap.add_argument("--calibrate", action="store_true",
                    help="estimate: first recalibrate this CPU kind from the finished study of this config")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.step in RESOLVED_NEXT_TO:  # the config each step ran with, beside what it wrote
            save_resolved(cfg, RESOLVED_NEXT_TO[args.step](cfg))
        if args.step == "data":
            from pathlib import Path

            from .data import build
            from .locks import wait_for
            with wait_for(Path(cfg.data.out_dir) / ".data.lock", "data"):  # array tasks over one folder
                m = build(cfg)
            files = m["files"]
            print(f"data: {len(files)} files in {cfg.data.out_dir}/ from {m['source']} "
                  f"(train {m['split_rows']['train']}, valid {m['split_rows']['valid']}, "
                  f"test {m['split_rows']['test']} rows; {len(m['labels'])} labels)")
            return 0
        if args.step in ("train", "eval") and args.shard is None:
            from .runs import shard_from_env
            args.shard = shard_from_env(None)
            if args.shard:
                print(f"{args.step}: shard {args.shard} from the Slurm array (SLURM_ARRAY_TASK_ID, "
                      f"SLURM_ARRAY_TASK_COUNT); --shard overrides", flush=True)
        if args.step == "train":
            from .train import run_all
            return run_all(cfg, only=args.only, shard=args.shard)
        if args.step == "eval":
            from .eval import run_all
            return run_all(cfg, only=args.only, shard=args.shard)
        if args.step == "baselines":
            from .baselines import run_all
            return run_all(cfg)
        if args.step == "sweep":
            if args.name not in (None, "setfit_head", "encoder"):
                raise FewshotError(f"sweep: unknown sweep {args.name!r} (none, for the config's recipes, setfit_head "
                                   f"or encoder)")
            from .sweep import encoder_recipes, run as sweep_run, setfit_heads
            return {"setfit_head": setfit_heads, "encoder": encoder_recipes}.get(args.name, sweep_run)(cfg)
        if args.step == "curve":
            from .curve_step import run as curve_run
            return curve_run(cfg)
        if args.step == "report":
            from .report import render
            return render(cfg)
        if args.step == "plan-bench":
            from .plan_bench import run as plan_bench_run
            from .plan import Costs
            costs = Costs(round=args.cost_per_round) if args.cost_per_round is not None else None
            return plan_bench_run(args.lcdb, args.max_curves, args.boot, args.out, costs, curves_file=args.curves,
                                  half=args.half, write_odds=args.write_odds)
        if args.step == "plan-replay":
            from .plan_replay import run as replay_run
            return replay_run(cfg, args.rounds, args.curves)
        if args.step == "curve-bench":
            from .curve_bench import run as curve_bench_run
            return curve_bench_run(args.lcdb, args.objs, args.max_curves, args.boot, args.out,
                                   args.write_calibration, args.text_only)
        if args.step == "estimate":
            from .estimate import run as estimate_run
            return estimate_run(cfg, args.calibrate)
        if args.step == "bench":
            from .bench import run as bench_run
            return bench_run(cfg, args.name)
    except FewshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
