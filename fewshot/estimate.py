"""How long the study will take here, before it starts: `python -m fewshot estimate` (study.sh prints it).

The work is counted from the config and the data step's manifest (rows x epochs x tokens to train,
rows x tokens to score, encoder steps, server starts); the speed is this machine's own, from a
three-second matrix-product probe (fp32, and bf16 where the CPU has it natively), scaled by what the
study achieved per unit of that probe on a CPU where it was timed (estimate_calibration.json, from
`python -m fewshot bench study`, then `python -m fewshot estimate --calibrate`). So a CPU twice as fast at matrix products is estimated twice as
fast; what the probe does not see (memory bandwidth, vLLM's kernels for this CPU, start-up times)
is the estimate's error, measured only where the study was run (docs/benchmarks.md)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .config import Config
from .devices import cpu_kind, cpu_lanes, cpu_model, device_and_precision, has_gpu, native_precision
from .manifest import load_manifest
from .serve import reloads_weights
from .runs import (encoder_epochs, epochs_for, eval_file_name, icl_answer_modes, icl_sizes, merge_marker,
                   run_names, seeds_for, selections_for)

# What the study achieved per unit of the probe on the CPU it was timed on (`python -m fewshot
# estimate --calibrate` after `python -m fewshot bench study`), one entry per CPU kind.
CALIBRATION = Path(__file__).with_name("estimate_calibration.json")


def probe_gflops(dtype: str = "fp32", reps: int = 6, each_s: float = 0.4) -> float:
    """Matrix products of 1024 x 1024 on every core this process may use: the best GFLOP/s of a
    few short bursts (the best is steadier than the mean: +-4% between calls on one machine)."""
    import torch
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(1024, 1024, dtype=dt), torch.randn(1024, 1024, dtype=dt)
    a @ b  # warm-up
    best = 0.0
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < each_s:
            a @ b
            n += 1
        best = max(best, 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9)
    return best


def model_params(path: str, skip: str | None = None) -> float:
    """Parameters of a local model folder, from its safetensors headers (no weights read); skip: leave
    out tensors whose name contains it (an encoder's "embeddings.": looked up, not multiplied)."""
    total = 0
    for f in Path(path).glob("*.safetensors"):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__" and not (skip and skip in k))
    return float(total)


def encoder_row_passes(b, n: int) -> int:
    """Rows the encoder fine-tune pushes through forward and backward for an n-row subset."""
    return max(1, math.ceil(encoder_epochs(b, n) * math.ceil(n / b.encoder_batch_size))) * b.encoder_batch_size


def work(cfg: Config) -> dict:
    """What the study will compute, counted from the config and the manifest."""
    man = load_manifest(cfg)
    files = man["files"]
    tok = lambda name: files[name].get("tokens", {}).get("mean", 0.0)
    ev = eval_file_name(cfg.eval.split)
    n_eval = files[ev].get("size") or man["split_rows"].get(cfg.eval.split, 0)
    runs = run_names(cfg)
    train_tokens = [n * epochs_for(cfg, n) * tok(name) for name, n, _, _ in runs]
    # every (selection, seed) a method runs on: random rows and the chosen ones (data.selection)
    n_seeds = lambda m: sum(len(seeds_for(cfg, m, sel)) for sel in selections_for(cfg, m))
    icl = len(icl_sizes(cfg)) * n_seeds("llm_icl") * len(icl_answer_modes(cfg)) if cfg.eval.icl else 0
    b = cfg.baselines
    enc_rows = [encoder_row_passes(b, n) for n in cfg.data.sizes] if "encoder" in b.methods else []
    sf_rows = list(cfg.data.sizes) if "setfit" in b.methods else []
    return {"params": model_params(cfg.model.name_or_path), "train_runs": len(runs), "train_tokens": sum(train_tokens),
            "train_run_tokens": train_tokens,
            "encoder_run_passes": enc_rows * n_seeds("encoder"),
            "setfit_run_rows": sf_rows * n_seeds("setfit"),
            "eval_rows": n_eval, "eval_tokens_per_row": tok(ev), "adapters": len(runs),
            "base_runs": (2 if cfg.eval.zero_shot else 0), "icl_runs": icl,
            "encoder_row_passes": sum(enc_rows) * n_seeds("encoder"),
            "encoder_runs": len(enc_rows) * n_seeds("encoder"),
            "setfit_rows": sum(sf_rows) * n_seeds("setfit"),
            "setfit_runs": len(sf_rows) * n_seeds("setfit")}


def probes(cfg: Config) -> dict:
    """This CPU's matrix-product speed in the precisions the study will use: fp32 always (start-ups
    and encoders scale with it), bf16 too where the LLM steps run in it (natively only)."""
    g = {"fp32": probe_gflops("fp32")}
    if device_and_precision(cfg)[1] == "bf16":
        g["bf16"] = probe_gflops("bf16")
    return g


def makespan(seconds: list[float], lanes: int) -> float:
    """Wall time of runs side by side on `lanes` lanes, heaviest first, each to the first free lane
    (what fewshot/schedule.py and the baselines' pool do)."""
    free = [0.0] * max(1, lanes)
    for s in sorted(seconds, reverse=True):
        free[free.index(min(free))] += s
    return max(free)


def lanes(parallel: int, jobs: int) -> int:
    return len(cpu_lanes(parallel, jobs)) or 1


def estimate(cfg: Config, w: dict | None = None, gflops: dict | None = None, ref: dict | None = None) -> dict:
    """Minutes per stage on this machine; {} where there is nothing to scale from (a GPU, no calibration).
    Runs side by side (train/baselines.cpu_parallel) are priced at the per-run speed the calibrating
    study measured, so a calibration made with as many lanes as the config asks for fits best."""
    if has_gpu():
        return {}
    w = w or work(cfg)
    g = gflops or probes(cfg)
    precision = device_and_precision(cfg)[1]
    r = ref if ref is not None else reference(precision=precision, fp32_gflops=g["fp32"])
    if not r:
        return {}
    llm = g.get(precision, g["fp32"]) * 1e9
    fp32 = g["fp32"] * 1e9
    scale = r["probe_gflops"] * 1e9 / fp32  # start-ups and encoders: in proportion to fp32 speed
    train = makespan([r["train_start_s"] * scale + 4 * w["params"] * t / (r["train_flop_share"] * llm)
                      for t in w["train_run_tokens"]], lanes(cfg.train.cpu_parallel, w["train_runs"]))
    row = 2 * w["params"] * w["eval_tokens_per_row"] * w["eval_rows"]
    # one server for the base model's runs, one per adapter (after its merge), side by side in lanes
    base_server = [r["server_start_s"] * scale + w["base_runs"] * row / (r["serve_flop_share"] * llm)
                   + w["icl_runs"] * row / (r["icl_serve_flop_share"] * llm)] if w["base_runs"] or w["icl_runs"] else []
    n = lanes(cfg.eval.cpu_parallel, len(base_server) + w["adapters"])
    # a new server per adapter, or (eval.reload_weights) one per lane and the next adapters loaded into it
    starts = [r["server_start_s"] if i < n or not reloads_weights(cfg.eval) else r.get("reload_s", r["server_start_s"])
              for i in range(w["adapters"])]
    adapter_servers = [(s + r["merge_s"]) * scale + row / (r["serve_flop_share"] * llm) for s in starts]
    servers = base_server + adapter_servers
    evals = makespan(servers, n)
    heavy = [(r["encoder_start_s"] + p * r["encoder_row_pass_s"]) * scale for p in w["encoder_run_passes"]] \
        + [(r["setfit_start_s"] + n * r["setfit_row_s"]) * scale for n in w["setfit_run_rows"]]
    base = makespan(heavy, lanes(cfg.baselines.cpu_parallel, len(heavy)))
    out = {"train": train, "eval": evals, "baselines": base, "report": r["report_s"] * scale}
    return {k: round(v / 60, 1) for k, v in {**out, "total": sum(out.values())}.items()}


def describe(cfg: Config) -> str:
    if has_gpu():
        return "estimate: none for a GPU box (the estimate is calibrated on CPUs only)"
    g, w, precision = probes(cfg), work(cfg), device_and_precision(cfg)[1]
    ref = reference(precision=precision, fp32_gflops=g["fp32"])
    est = estimate(cfg, w, g, ref)
    if not est:
        return "estimate: not calibrated yet"
    stages = ", ".join(f"{k} ~{v:g}" for k, v in est.items() if k != "total")
    speed = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in g.items())
    where = "the same CPU kind" if ref.get("cpu_kind") == cpu_kind() else "another CPU kind: expect a larger error"
    if _precision(ref) != precision:
        where += f"; timed in {_precision(ref)}, this study runs in {precision}: expect a larger error"
    now = {"train_lanes": lanes(cfg.train.cpu_parallel, w["train_runs"]),
           "eval_lanes": lanes(cfg.eval.cpu_parallel, w["adapters"] + bool(w["base_runs"] or w["icl_runs"])),
           "baseline_lanes": lanes(cfg.baselines.cpu_parallel, w["encoder_runs"] + w["setfit_runs"])}
    if any(ref.get(k, 1) != v for k, v in now.items()):  # a run beside another is slower than one alone
        where += (f"; runs side by side there {'/'.join(str(ref.get(k, 1)) for k in now)}, here "
                  f"{'/'.join(map(str, now.values()))} (train/eval/baselines): expect a larger error")
    return (f"estimate: ~{est['total']:g} min on this {cpu_model()} ({cpu_kind()}; probe {speed}): {stages} min "
            f"(calibrated on {ref['cpu']}, {where})")


def _precision(ref: dict) -> str:
    """The precision a calibration's LLM runs were timed in (older entries: their kind's native one)."""
    return ref.get("precision") or native_precision(ref.get("cpu_kind", "other"))


def reference(kind: str | None = None, precision: str | None = None, fp32_gflops: float | None = None) -> dict:
    """The calibration to price this machine's study from; {} when none. Timed in the precision the
    study will run in first (bf16 speeds up each kind of work by its own factor, not the probe's:
    docs/benchmarks.md), then this CPU kind, then the fp32 probe nearest this machine's."""
    cal = json.loads(CALIBRATION.read_text()) if CALIBRATION.exists() else {}
    if not cal:
        return {}
    kind = kind or cpu_kind()
    refs = list(cal.values())
    near = lambda r: abs(math.log(r["probe_gflops"] / fp32_gflops)) if fp32_gflops else 0.0
    return min(refs, key=lambda r: (precision is not None and _precision(r) != precision,
                                    r.get("cpu_kind") != kind, near(r), refs.index(r)))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = a + b x; a is floored at 0 (a start-up time cannot be negative)."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else my / mx
    a = my - b * mx
    return (a, b) if a >= 0 else (0.0, sum(ys) / sum(xs))


def calibrate(cfg: Config) -> dict:
    """Rates from the records a finished study left (train summaries, scored runs, merges, baseline
    runs, stage times), per unit of this machine's probe; written to CALIBRATION for its CPU kind."""
    from .fileio import atomic_write_json, read_json, read_jsonl
    from .runs import ZERO_SHOT, ZERO_SHOT_CONSTRAINED, baseline_name, icl_name, out_paths
    w, speeds = work(cfg), probes(cfg)
    g = speeds["fp32"]
    llm = speeds.get(device_and_precision(cfg)[1], g) * 1e9
    names = {name for name, _, _, _ in run_names(cfg)}
    summ = {s["run"]: s for s in read_jsonl(Path(cfg.train.log_dir) / "train_summary.jsonl") if s["run"] in names}
    rec = lambda name: read_json(out_paths(cfg, name)["json"])
    flops = sum(4 * w["params"] * s["tokens_seen"] for s in summ.values())
    lora = [rec(n) for n in sorted(names)]
    base = [rec(n) for n in (ZERO_SHOT, ZERO_SHOT_CONSTRAINED) if out_paths(cfg, n)["json"].exists()]
    icl = [rec(icl_name(n, s, cfg.data, c)) for s in cfg.data.seeds for n in icl_sizes(cfg) for c in icl_answer_modes(cfg)]
    row = 2 * w["params"] * w["eval_tokens_per_row"] * w["eval_rows"]
    merges = [read_json(merge_marker(cfg, n))["seconds"] for n in sorted(names)]
    enc = [rec(baseline_name("encoder", n, s)) for s in cfg.baselines.seeds for n in cfg.data.sizes]
    b = cfg.baselines
    passes = [encoder_row_passes(b, r["train_rows"]) for r in enc]
    sf = [rec(baseline_name("setfit", n, s)) for s in b.seeds for n in cfg.data.sizes]
    sf_a, sf_b = _least_squares([r["train_rows"] for r in sf], [r["seconds"] for r in sf])
    times = {t["stage"]: t["seconds"] for t in read_jsonl(Path(cfg.train.log_dir) / "study_times.jsonl")}
    precision, kind = device_and_precision(cfg)[1], cpu_kind()
    ref = {
        "cpu": f"{cpu_model()} ({kind}, {precision}), the {cfg.name} study of {time.strftime('%Y-%m-%d')}", "cpu_kind": kind,
        "precision": precision, "probe_gflops": round(g, 1),
        "train_flop_share": round(flops / sum(s["train_runtime_s"] for s in summ.values()) / llm, 4),
        "train_start_s": round(sum(s["wall_s"] - s["train_runtime_s"] for s in summ.values()) / len(summ), 1),
        "serve_flop_share": round(len(lora + base) * row / sum(r["scoring"]["seconds"] for r in lora + base) / llm, 4),
        "icl_serve_flop_share": round(len(icl) * row / sum(r["scoring"]["seconds"] for r in icl) / llm, 4) if icl else 0.05,
        "merge_s": round(sum(merges) / len(merges), 1),
        "server_start_s": round(_mean([r["scoring"]["server_start_s"] for r in lora + base[:1]
                                       if not r["scoring"].get("weights_reloaded")]), 1),
        "reload_s": round(_mean([r["scoring"]["server_start_s"] for r in lora if r["scoring"].get("weights_reloaded")]
                                or [0.0]), 1),
        "encoder_start_s": 0.0,
        "encoder_row_pass_s": round(sum(r["seconds"] for r in enc) / sum(passes), 4),
        "setfit_start_s": round(sf_a, 1), "setfit_row_s": round(sf_b, 3),
        "report_s": times.get("report", 60),
        # the lanes the runs above were timed in: a run side by side is slower than one alone
        "train_lanes": lanes(cfg.train.cpu_parallel, len(summ)),
        "eval_lanes": lanes(cfg.eval.cpu_parallel, len(lora) + bool(base or icl)), "baseline_lanes": lanes(cfg.baselines.cpu_parallel, len(enc + sf)),
    }
    cal = json.loads(CALIBRATION.read_text()) if CALIBRATION.exists() else {}
    cal[kind if precision == native_precision(kind) else f"{kind}_{precision}"] = ref  # e.g. "amx_fp32"
    atomic_write_json(CALIBRATION, cal)
    return ref


def run(cfg: Config, calibrate_now: bool = False) -> int:
    if calibrate_now:
        print(json.dumps(calibrate(cfg), indent=1))
    print(describe(cfg), flush=True)
    return 0
