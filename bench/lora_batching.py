"""LoRA training of one demo run in two ways at once, one per core, then on swapped cores: seconds,
tokens and the final training loss of each. The default pair is the demo before and after it took
micro-batches of 2 sorted by length within each optimizer step and attention by micro-batch length
(a flash_attn set in the YAML turns the latter off):
    .venv/bin/python bench/lora_batching.py --config configs/demo.yaml --run llm_train_32 \
        --a train.per_device_train_batch_size=1 train.gradient_accumulation_steps=8 'train.extra={flash_attn: sdpa}' \
        --b train.per_device_train_batch_size=2 train.gradient_accumulation_steps=4
Reads the data step's files (data/); writes under /tmp, never into saves/."""
import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fewshot.bench import machine  # noqa: E402
from fewshot.config import load_config  # noqa: E402
from fewshot.envs import env_bin  # noqa: E402
from fewshot.fileio import atomic_write_json  # noqa: E402
from fewshot.train import lf_args, lf_yaml_args  # noqa: E402


def train_yaml(config: str, overrides: list[str], run: str, out: Path) -> Path:
    cfg = load_config(config, overrides)
    size = int(run.split("_")[2])
    args = lf_yaml_args(lf_args(cfg, run, "bench", size))
    args.update(output_dir=str(out), save_steps=10_000)  # no checkpoints: only the time is wanted
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(args, sort_keys=False))
    return path


def start(path: Path, core: int, log: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(["taskset", "-c", str(core), env_bin("train", "python"), "-m", "fewshot.train_env.lf_train",
                             str(path)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def summary(log: Path) -> dict:
    last = [line for line in log.read_text().splitlines() if "'train_runtime'" in line and "train_loss" in line]
    d = ast.literal_eval(last[-1][last[-1].index("{"):last[-1].rindex("}") + 1])  # the trainer's summary
    return {"seconds": float(d["train_runtime"]), "tokens_seen": int(d["num_input_tokens_seen"]),
            "train_loss": float(d["train_loss"])}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--run", default="llm_train_32")
    ap.add_argument("--a", nargs="*", default=["train.per_device_train_batch_size=1",
                                               "train.gradient_accumulation_steps=8", "train.extra={flash_attn: sdpa}"])
    ap.add_argument("--b", nargs="*", default=["train.per_device_train_batch_size=2",
                                               "train.gradient_accumulation_steps=4"])
    ap.add_argument("--out", help="default: bench/results/lora_batching_demo_<cpu kind>.json")
    a = ap.parse_args()
    a.out = a.out or f"bench/results/lora_batching_demo_{machine()['cpu_kind']}.json"
    tmp = Path(tempfile.mkdtemp(prefix="lora_batching_"))
    rows = []
    for rnd, cores in enumerate(({"a": 0, "b": 1}, {"a": 1, "b": 0})):
        procs = {}
        for v in ("a", "b"):
            path = train_yaml(a.config, getattr(a, v), a.run, tmp / f"{v}{rnd}")
            procs[v] = (start(path, cores[v], tmp / f"{v}{rnd}.log"), cores[v])
        for v, (p, core) in procs.items():
            if p.wait() != 0:
                sys.exit(f"variant {v} failed: {tmp / f'{v}{rnd}.log'}")
            rows.append({"variant": v, "core": core, "round": rnd, **summary(tmp / f"{v}{rnd}.log")})
            print(rows[-1], flush=True)
    mean = {v: sum(r["seconds"] for r in rows if r["variant"] == v) / 2 for v in ("a", "b")}
    atomic_write_json(ROOT / a.out, {
        "what": f"LoRA training of {a.run}, both variants side by side (one core each), then on swapped cores",
        "command": "bench/lora_batching.py", "machine": machine(), "a": a.a, "b": a.b, "rows": rows,
        "mean_seconds": mean, "speedup_b_over_a": round(mean["a"] / mean["b"], 3),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(json.dumps({"mean_seconds": mean, "speedup_b_over_a": round(mean["a"] / mean["b"], 3)}))
