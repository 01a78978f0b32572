"""Checks for bench/slurm_local.sh: a study run as a Slurm array (SHARDED) against the same config
run unsharded (REF). Every run trained and scored exactly once, each by one task; every scored label
equal row by row, or a near-tie that bf16 batching flipped (`fewshot.agreement`: the margin of each
flip is printed, free texts that differ are counted); the baselines equal to three decimals; the
cancelled run resumed.

    python bench/slurm_compare.py REF SHARDED [--resumed RUN]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fewshot.agreement import answers, compare, words  # noqa: E402

TRAINED = re.compile(r"\[train\] (\S+): done in")  # searched: progress bars share lines
SCORED = re.compile(r"\[eval\] (\S+): accuracy")


def events(outs: list[Path], pattern: re.Pattern) -> dict[str, Counter]:
    """run -> how many times each output file (one per Slurm task) says it finished it."""
    seen: dict[str, Counter] = {}
    for f in outs:
        for line in f.read_text(errors="replace").splitlines():
            m = pattern.search(line)
            if m:
                seen.setdefault(m.group(1), Counter())[f.name] += 1
    return seen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", type=Path)
    ap.add_argument("sharded", type=Path)
    ap.add_argument("--resumed", help="the run whose training was cancelled and resubmitted")
    a = ap.parse_args(argv)
    ok = True

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        ok &= cond
        print(f"  {'ok  ' if cond else 'FAIL'} {what}")

    trained_runs = sorted(p.parent.name for p in (a.ref / "saves").glob("*/done.json"))
    scored_runs = sorted(p.parent.name for p in (a.ref / "objs").glob("*/predictions.jsonl"))
    task_outs = sorted((a.sharded / "logs").glob("slurm-fewshot-runs-*.out"))
    print(f"runs: {len(trained_runs)} trained, {len(scored_runs)} with answers (LLM and baselines) in the unsharded study; "
          f"{len(task_outs)} array task outputs")
    check(bool(trained_runs and scored_runs and task_outs), "the unsharded study and the array both produced runs")
    # the runs the eval step scores (the baselines' predictions sit beside them, written by the finish job)
    served_runs = sorted(events(sorted((a.ref / "logs").glob("slurm-ref-*.out")), SCORED))
    for what, pattern, runs in (("trained", TRAINED, trained_runs), ("scored", SCORED, served_runs)):
        seen = events(task_outs, pattern)
        for run in runs:
            by = seen.get(run, Counter())
            check(sum(by.values()) == 1, f"{run} {what} once by the array ({dict(by) or 'never'})")
        extra = sorted(set(seen) - set(runs))
        check(not extra, f"no {what} run beyond the unsharded study's ({extra or 'none'})")
    if a.resumed:
        lines = [ln for f in task_outs for ln in f.read_text(errors="replace").splitlines()
                 if ln.startswith(f"[train] {a.resumed}:") and "resuming from checkpoint-" in ln]
        check(len(lines) == 1, f"{a.resumed} resumed from its checkpoint after the cancel: {lines}")

    for run in scored_runs:
        c = compare(answers(a.ref / "objs", run), answers(a.sharded / "objs", run))
        check(c["same"], words(run, c))
    for f in sorted((a.ref / "objs").glob("*_s[0-9]*.json")):
        other = a.sharded / "objs" / f.name
        x = json.loads(f.read_text())["metrics"]["accuracy"]
        y = json.loads(other.read_text())["metrics"]["accuracy"] if other.exists() else float("nan")
        check(round(x, 3) == round(y, 3), f"{f.stem}: accuracy {x:.3f} unsharded, {y:.3f} array")
    for name in ("report.html", "label_plan.json"):
        check((a.sharded / "report" / name).exists(), f"the array's finish job wrote report/{name}")
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
