"""The baselines' encoder and SetFit runs with glibc's default allocator and with freed blocks kept
in the heap (devices.CPU_MALLOC): seconds, training loss or valid accuracy of each. The two settings
run at once, one per core, then on swapped cores (this CPU's speed drifts within minutes); glibc
reads the setting when a process starts, so each run is its own process.
    .venv/bin/python bench/malloc_reuse.py --config configs/demo.yaml --encoder-rows 16 --setfit-rows 128
Reads the data step's files (data/); writes bench/results/malloc_reuse_<cpu kind>.json."""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fewshot.bench import machine  # noqa: E402
from fewshot.devices import CPU_MALLOC  # noqa: E402
from fewshot.fileio import atomic_write_json  # noqa: E402

SETTINGS = {"glibc default": {}, "freed blocks kept": {"GLIBC_TUNABLES": CPU_MALLOC}}


def one(method: str, config: str, rows: int, core: int) -> None:
    """One run on one core with one thread; prints its row as JSON (the child's side)."""
    os.sched_setaffinity(0, {core})
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from fewshot import baselines
    from fewshot.config import load_config
    from fewshot.runs import eval_file_name, train_file_name
    cfg = load_config(config)
    tx, ty = baselines.split_texts(cfg, train_file_name(rows, 0, cfg.data))
    vx, vy = baselines.split_texts(cfg, eval_file_name("valid"))
    t0 = time.time()
    if method == "encoder":
        labels, logits, loss = baselines.encoder_logits(tx, ty, vx, 0, cfg, baselines.encoder_micro_batch(cfg.baselines))
        pred = [labels[i] for i in np.argmax(logits, axis=-1)]
    else:
        pred, loss = baselines.setfit(tx, ty, vx, 0, cfg), None
    print(json.dumps({"seconds": round(time.time() - t0, 1), "train_loss": loss,
                      "valid_accuracy": round(sum(p == y for p, y in zip(pred, vy)) / len(vy), 4)}), flush=True)


def pair(method: str, config: str, rows: int, cores: list[int]) -> list[dict]:
    """Both settings at once, the first on cores[0], the second on cores[1]."""
    procs = []
    for (name, extra), core in zip(SETTINGS.items(), cores):
        env = {**{k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}, **extra}
        procs.append((name, core, subprocess.Popen([sys.executable, __file__, "--one", method, config, str(rows), str(core)],
                                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)))
    out = []
    for name, core, p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"{method} with {name} on core {core} failed ({p.returncode})")
        row = {"method": method, "rows": rows, "setting": name, "core": core, **json.loads(stdout.strip().splitlines()[-1])}
        print(row, flush=True)
        out.append(row)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        sys.exit()
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--encoder-rows", type=int, default=16)
    ap.add_argument("--setfit-rows", type=int, default=128)
    a = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores: the two settings run at once, one per core")
    rows = []
    for method, n in (("encoder", a.encoder_rows), ("setfit", a.setfit_rows)):
        rows += pair(method, a.config, n, [0, 1]) + pair(method, a.config, n, [1, 0])
    m = machine()
    out = ROOT / "bench" / "results" / f"malloc_reuse_{m['cpu_kind']}.json"
    atomic_write_json(out, {"what": "encoder and SetFit runs with glibc's default allocator and with freed blocks kept "
                                    f"(GLIBC_TUNABLES={CPU_MALLOC})", "command": "bench/malloc_reuse.py",
                            "config": a.config, "machine": m, "rows": rows, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"wrote {out}")
