"""The train step: one LoRA adapter per (size, seed) with real LLaMA-Factory in the training env.

Each run gets `saves/<run>/train.yaml` (LLaMA-Factory's own example layout) and one
`llamafactory-cli train` call (through fewshot/train_env/lf_train.py, which spares the prompt's logits). A
run is finished only when its adapter files and `done.json` (holding the run's hash) exist; a
changed config or data file retrains it, an interrupted run resumes from its last checkpoint, and Ctrl-C or `kill` stops the trainer's process group."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import yaml

from . import procs
from .config import Config
from .manifest import load_manifest
from .locks import Busy, hold
from .models import ADAPTER_FILES, adapter_finished, check_model_path
from .runs import epochs_for, rows_passed, run_dir, run_names, shard_of, train_lock
from .devices import cpu_lanes, device_and_precision, lane_words, pin
from .envs import env_bin, subprocess_env
from .errors import FewshotError
from .train_env.lf_train import EAGER_MAX_TOKENS
from .fileio import append_jsonl, atomic_write_json, atomic_write_text, read_json, read_jsonl

def labelled_logits(cfg: Config) -> bool:
    """train.labelled_logits_only, except with Liger kernels (train.extra.enable_liger_kernel): their
    fused linear cross-entropy makes no logits to spare, and their forward fails on the cut (a view
    error, measured on an H100)."""
    return cfg.train.labelled_logits_only and not cfg.train.extra.get("enable_liger_kernel")


def lf_args(cfg: Config, name: str, data_sha: str, size: int = 0) -> dict:
    """The LLaMA-Factory YAML for one run (keys as in its examples/train_lora/*.yaml)."""
    t, out = cfg.train, run_dir(cfg, name)
    device, precision = device_and_precision(cfg)
    args = {
        "model_name_or_path": str(Path(cfg.model.name_or_path).resolve()) if Path(cfg.model.name_or_path).exists()
        else cfg.model.name_or_path,
        "trust_remote_code": True,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": t.lora_rank,
        "lora_alpha": t.lora_alpha,
        "lora_dropout": t.lora_dropout,
        "lora_target": t.lora_target,
        "dataset_dir": str(Path(cfg.data.out_dir).resolve()),
        "dataset": name,
        "template": cfg.model.template,
        "cutoff_len": t.cutoff_len,
        "overwrite_cache": True,
        "output_dir": str(out.resolve()),
        "overwrite_output_dir": True,  # we decide about resuming ourselves (resume_from_checkpoint)
        "logging_steps": t.logging_steps,
        "save_steps": t.save_steps,
        "save_total_limit": 1,
        "plot_loss": True,
        "report_to": "none",
        "include_num_input_tokens_seen": True,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "num_train_epochs": epochs_for(cfg, size),
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_steps": t.warmup_steps,
        "max_grad_norm": t.max_grad_norm,
        "optim": "adamw_torch",
        "seed": t.seed,
        "data_seed": t.seed,
        "ddp_timeout": 180000000,
        "dataloader_num_workers": 0,
    }
    if precision in ("bf16", "fp16"):
        args[precision] = True
    if device == "cpu":
        args["use_cpu"] = True
    if not t.gradient_checkpointing:
        args["disable_gradient_checkpointing"] = True
    if t.fast:
        args["per_device_train_batch_size"] = t.per_device_train_batch_size * t.gradient_accumulation_steps
        args["gradient_accumulation_steps"] = 1
        args["disable_gradient_checkpointing"] = True
        args["train_sampling_strategy"] = "group_by_length"
    args.update(t.extra)
    args["_fewshot_data_sha256"] = data_sha  # hashed, then removed before writing
    if labelled_logits(cfg):  # same loss, other float rounding: a run trained the other way is retrained
        args["_fewshot_labelled_logits_only"] = True
        if args["per_device_train_batch_size"] > 1 and not t.fast:  # each step's rows sorted by length (lf_train)
            args["_fewshot_sorted_steps"] = True
        if device == "cpu" and "flash_attn" not in t.extra:  # eager on short micro-batches, SDPA on long ones
            args["_fewshot_cpu_attention_by_length"] = EAGER_MAX_TOKENS
    return args


# Keys that change how a run is logged or checkpointed, not the adapter it produces.
NOT_HASHED = {"logging_steps", "save_steps", "save_total_limit", "plot_loss", "report_to",
              "dataloader_num_workers", "resume_from_checkpoint", "output_dir", "overwrite_output_dir"}


# lf_args keys that only go into the run's hash (how the data and the trainer's patches make the
# adapter), never into LLaMA-Factory's YAML.
HASH_ONLY = "_fewshot_"


def lf_yaml_args(args: dict) -> dict:
    """lf_args without its hash-only keys: what LLaMA-Factory reads."""
    return {k: v for k, v in args.items() if not k.startswith(HASH_ONLY)}


def run_hash(args: dict) -> str:
    import hashlib
    key = {k: v for k, v in args.items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def last_checkpoint(out: Path) -> Path | None:
    cks = sorted((p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                 key=lambda p: int(p.name.split("-")[-1]))
    for ck in reversed(cks):  # a checkpoint torn by a kill lacks trainer_state.json
        if (ck / "trainer_state.json").exists():
            return ck
    return None


def is_done(cfg: Config, name: str, h: str) -> bool:
    out = run_dir(cfg, name)
    done = out / "done.json"
    return adapter_finished(out) and read_json(done).get("hash") == h


def train_one(cfg: Config, name: str, size: int, seed: int, data_sha: str, lock=None, gpu: str | None = None,
              cpus: list[int] | None = None) -> str:
    """Train (or skip, or resume) one run. Returns 'skipped' | 'trained'; raises on failure.
    With the run's lock, the trainer process inherits it (see locks.Held); with cpus, it runs on those
    cores with as many threads."""
    args = lf_args(cfg, name, data_sha, size)
    h = run_hash(args)
    args = lf_yaml_args(args)
    out = run_dir(cfg, name)
    if is_done(cfg, name, h):
        return "skipped"
    started = out / "run.json"
    if out.exists() and (not started.exists() or read_json(started).get("hash") != h):
        shutil.rmtree(out)  # another config trained here: its checkpoints must not be resumed
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(started, {"hash": h, "run": name, "size": size, "seed": seed})
    ck = last_checkpoint(out)
    if ck is not None:
        args["resume_from_checkpoint"] = str(ck)
    atomic_write_text(out / "train.yaml", yaml.safe_dump(args, sort_keys=False))

    log = Path(cfg.train.log_dir) / f"{name}.train.log"
    yaml_path = str((out / "train.yaml").resolve())
    cmd = ([env_bin("train", "python"), "-m", "fewshot.train_env.lf_train", yaml_path] if labelled_logits(cfg)
           else [env_bin("train", "llamafactory-cli"), "train", yaml_path])
    print(f"[train] {name}: {size} rows, seed {seed}" + (f", resuming from {ck.name}" if ck else "")
          + (f", GPU {gpu}" if gpu is not None else "") + (f", cores {cpus}" if cpus else "")
          + f" (log: {log})", flush=True)
    t0 = time.time()
    env = subprocess_env(**({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}),
                         **({"OMP_NUM_THREADS": str(len(cpus))} if cpus else {}))
    proc = procs.start(cmd, log, env=env, pass_fds=(lock.fd,) if lock else ())
    if cpus:
        pin(proc.pid, cpus)
    if lock:
        lock.note_child(proc.pid)
    rc = procs.wait(proc, _LIVE)
    wall = time.time() - t0
    if rc != 0 or not all((out / f).exists() for f in ADAPTER_FILES):
        raise FewshotError(f"{name}: llamafactory-cli exited with {rc}; last lines of {log}:\n{procs.tail(log)}")
    summary = summarize(out, name, size, seed, wall)
    import resource  # largest child so far (Linux reports kB): the trainer, in practice
    summary["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)
    summary["cores"] = cpus  # its lane where runs went side by side (None: every core)
    append_jsonl(Path(cfg.train.log_dir) / "train_summary.jsonl", summary)
    atomic_write_json(out / "done.json", {"hash": h, **summary})
    print(f"[train] {name}: done in {wall:.0f}s, {summary['samples_per_s']} samples/s, "
          f"final loss {summary['final_loss']}", flush=True)
    return "trained"


def summarize(out: Path, name: str, size: int, seed: int, wall: float) -> dict:
    res = read_json(out / "train_results.json") if (out / "train_results.json").exists() else {}
    logs = [r for r in read_jsonl(out / "trainer_log.jsonl") if "loss" in r]
    args = yaml.safe_load((out / "train.yaml").read_text())
    return {
        "run": name, "rows": size, "seed": seed, "epochs": args.get("num_train_epochs"),
        "wall_s": round(wall, 1),
        "train_runtime_s": res.get("train_runtime"),
        "samples_per_s": res.get("train_samples_per_second"),
        "tokens_seen": res.get("num_input_tokens_seen"),
        "final_loss": logs[-1]["loss"] if logs else res.get("train_loss"),
        "mean_loss": res.get("train_loss"),
        "precision": "bf16" if args.get("bf16") else "fp16" if args.get("fp16") else "fp32",
        "micro_batch": args.get("per_device_train_batch_size"),
        "accumulation": args.get("gradient_accumulation_steps"),
        "gradient_checkpointing": not args.get("disable_gradient_checkpointing", False),
        "device": "cpu" if args.get("use_cpu") else "gpu",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_weight(cfg: Config, meta: dict, size: int) -> float:
    """A run's work for the scheduler: its tokens over all epochs (the manifest's mean row length), so
    of two subsets of one size the longer texts start first and the lanes end together (sizes alone
    tied them: the demo's typical runs, ~8% longer, always went last and one core waited ~45 s)."""
    return rows_passed(cfg, "llm_lora", size) * ((meta.get("tokens") or {}).get("mean") or 1.0)


_LIVE: set = set()  # trainer processes running now (several at once on a multi-GPU box)


def _attempt(cfg: Config, name: str, size: int, seed: int, sha: str, gpu: str | None = None,
             cpus: list[int] | None = None) -> str:
    """One run under its lock: 'trained' | 'skipped' | 'busy' | 'failed'."""
    try:
        with hold(train_lock(cfg, name)) as lock:
            return train_one(cfg, name, size, seed, sha, lock, gpu, **({"cpus": cpus} if cpus else {}))
    except Busy as e:
        print(f"[train] {name}: skipped, another process trains it ({e})", flush=True)
        return "busy"
    except FewshotError as e:
        print(f"[train] FAILED {e}", flush=True)
        return "failed"


def gpu_slots(cfg: Config) -> list[str]:
    """The cards to spread runs over, each listed train.runs_per_gpu times: every visible one
    (train.gpus limits), unless one run spans several through LLaMA-Factory's own launcher
    (FORCE_TORCHRUN) or there is no GPU."""
    from .schedule import visible_gpus
    if device_and_precision(cfg)[0] != "cuda" or os.environ.get("FORCE_TORCHRUN", "0") not in ("0", ""):
        return []
    return [g for g in visible_gpus(cfg.train.gpus) for _ in range(cfg.train.runs_per_gpu)]


def run_all(cfg: Config, only: list[str] | None = None, shard: str | None = None) -> int:
    manifest = load_manifest(cfg)
    check_model_path(cfg)
    runs = shard_of([r[:3] for r in run_names(cfg) if not only or r[0] in only], shard)
    for name, _, _ in runs:
        if name not in manifest["files"]:
            raise FewshotError(f"{name}.json is not in {cfg.data.out_dir}/manifest.json: rerun the data "
                               f"step with this config")
    if runs:  # a node without the training env says so once, before any run is taken
        env_bin("train", "llamafactory-cli")
    slots = gpu_slots(cfg)
    sha = lambda n: manifest["files"][n]["sha256"]
    # lanes for the runs left to train: one run left (a labelling round's new size) takes every core
    left = sum(not is_done(cfg, n, run_hash(lf_args(cfg, n, sha(n), size))) for n, size, _ in runs)
    lanes = [] if slots or device_and_precision(cfg)[0] != "cpu" else cpu_lanes(cfg.train.cpu_parallel, left)
    status: dict[str, str] = {}
    with procs.TermAsInterrupt():
        if len(slots) > 1 or lanes:
            from .schedule import run_on_slots
            if lanes:
                print(f"[train] {len(runs)} run(s), {len(lanes)} at a time on the CPU: {lane_words(lanes)} "
                      f"(train.cpu_parallel)", flush=True)
                slots = lanes
                work = lambda p, cpus: _attempt(cfg, *p, sha(p[0]), cpus=cpus)
            else:
                print(f"[train] {len(runs)} run(s) over GPUs {','.join(sorted(set(slots)))}, "
                      f"{cfg.train.runs_per_gpu} run(s) per GPU at a time", flush=True)
                work = lambda p, gpu: _attempt(cfg, *p, sha(p[0]), gpu)
            jobs = [(n, run_weight(cfg, manifest["files"][n], size), (n, size, seed)) for n, size, seed in runs]
            status = run_on_slots(jobs, slots, work, lambda: [procs.stop(p) for p in list(_LIVE)])
        else:
            for i, (name, size, seed) in enumerate(runs, 1):
                print(f"[train] run {i} of {len(runs)}: {name}", flush=True)
                status[name] = _attempt(cfg, name, size, seed, sha(name))
    skipped = [n for n, s in status.items() if s == "skipped"]
    if skipped and len(skipped) == len(status):
        print(f"[train] nothing to do: all {len(status)} runs are already trained ({', '.join(skipped)})")
    elif skipped:
        print(f"[train] skipped (already trained): {', '.join(skipped)}")
    failed = [n for n, s in status.items() if s == "failed"]
    if failed:
        print(f"[train] {len(failed)} run(s) failed: {', '.join(failed)}")
        return 1
    return 0
