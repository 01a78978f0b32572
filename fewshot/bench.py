"""Benchmarks that print figures (never timed tests): `python -m fewshot bench <name>`.

client   the project's client vs. the original study's (one request at a time) vs. an open-loop saturated
         run at high concurrency, on one running vLLM server and the same prompts
serving  wall time to score the demo's runs in each serving mode, server start-up included
train    samples/s of a few steps of one demo run per CPU speed-up (and bf16 where native), losses, peak memory
study    the wall time of the whole first README command, by stage (reads logs/study_times.jsonl), then profile
profile  a finished study's seconds run by run (training, merges, server starts, scoring, baselines),
         the LLM's model FLOP/s against this CPU's matrix-product probe

Each prints what it ran on, a small table and a last line with the key ratio, and writes its
figures to bench/results/<name>_<cpu kind>.json."""
from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from copy import deepcopy
from pathlib import Path

from .config import Config, save_resolved
from .devices import device_and_precision, native_precision
from .manifest import load_manifest
from .runs import eval_file_name
from .envs import ROOT
from .errors import FewshotError
from .fileio import atomic_write_json, read_jsonl

RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    """The hardware a figure was measured on: CPU model, kind and vector flags, cores."""
    from .devices import VECTOR_FLAGS, cpu_flags, cpu_has_native_bf16, cpu_kind, cpu_model
    return {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "flags": [f for f in VECTOR_FLAGS if f in cpu_flags()],
            "cores": os.cpu_count(), "native_bf16": cpu_has_native_bf16(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    w = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(w[k]) for k in keys)] + ["  ".join(str(r[k]).ljust(w[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def _report(name: str, rows: list[dict], key_line: str, extra: dict | None = None, cfg: Config | None = None) -> int:
    m = machine()
    if cfg is not None:  # a study in a precision other than this CPU's native one keeps its own file
        m["precision"] = device_and_precision(cfg)[1]
    print(f"[bench {name}] {m['cpu']} ({', '.join(m['flags']) or 'no AVX2'}), {m['cores']} cores, native bf16 "
          f"{'yes' if m['native_bf16'] else 'no'}, Python {m['python']}, {m['date']}")
    print(_table(rows))
    print(key_line)
    # one file per bench and CPU kind: a figure from one CPU does not replace another's
    native = native_precision(m["cpu_kind"])
    tag = m["cpu_kind"] + (f"_{m['precision']}" if m.get("precision", native) != native else "")
    atomic_write_json(RESULTS / f"{name}_{tag}.json", {"machine": m, "rows": rows, "key": key_line, **(extra or {})})
    return 0


# ---------------------------------------------------------------- client

def bench_client(cfg: Config, n_rows: int = 96) -> int:
    """Same server, same prompts: original-study-style sequential client, ours (fewshot.client.score, the
    predictions file and all), and an open-loop flood with the raw OpenAI client."""
    import tempfile

    from .client import make_llm, score, to_langchain
    from .serve import VLLMServer, free_port, vllm_command
    rows = json.loads((Path(cfg.data.out_dir) / "llm_valid.json").read_text())[:n_rows]
    port = free_port()
    from .devices import cpu_serving_dtype
    cmd = vllm_command(str(Path(cfg.model.name_or_path).resolve()), "base", port, None, 8, cfg.eval.server_args,
                       cpu_dtype=cpu_serving_dtype(cfg))
    out = []
    with VLLMServer(cmd, port, Path(cfg.train.log_dir) / "bench_client.serve.log", cfg.eval.server_start_timeout) as url:
        llm = make_llm(url, "base", cfg.eval.max_tokens, 120, 2)
        llm.invoke(to_langchain(rows[0]))  # warm-up
        seq = rows[: max(16, n_rows // 4)]
        t0 = time.time()
        for r in seq:  # the original study's way: one request at a time, chain.invoke
            llm.invoke(to_langchain(r))
        sequential_rps = len(seq) / (time.time() - t0)
        out.append({"client": "original study (1 in flight)", "rows": len(seq), "req_per_s": round(sequential_rps, 2)})

        labels = load_manifest(cfg)["labels"]
        with tempfile.TemporaryDirectory() as tmp:
            st = score(url, "base", rows, labels, Path(tmp) / "p.jsonl", concurrency=cfg.eval.concurrency,
                       max_tokens=cfg.eval.max_tokens, progress=False)
        ours = st["rows_per_s"]
        out.append({"client": f"project ({cfg.eval.concurrency} in flight)", "rows": len(rows), "req_per_s": round(ours, 2)})
        # vLLM's limit: the raw OpenAI client, every request sent at once (open loop), no langchain
        limit = asyncio.run(_raw_flood(url, rows, cfg.eval.max_tokens))
        out.append({"client": f"raw open loop ({len(rows)} in flight)", "rows": len(rows), "req_per_s": round(limit, 2)})
    return _report("client", out, f"project/original = {ours / sequential_rps:.2f}x, project/vLLM-limit = {ours / limit:.2f}")


async def _raw_flood(base_url: str, rows: list[dict], max_tokens: int) -> float:
    from openai import AsyncOpenAI

    from .prompt import chat_messages
    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
    t = time.time()
    await asyncio.gather(*(client.chat.completions.create(model="base", messages=chat_messages(r), temperature=0,
                                                          max_tokens=max_tokens) for r in rows))
    await client.close()
    return len(rows) / (time.time() - t)


# ---------------------------------------------------------------- serving

def bench_serving(cfg: Config, n_rows: int = 48) -> int:
    """Score the demo's trained runs in each mode on n_rows rows, in fresh output folders, start-ups
    included; also project each mode's wall time at the config's eval size from its measured
    merge time, start-up and rows/s (start-ups dominate at small n_rows, rows/s at large)."""
    split = Path(cfg.data.out_dir) / f"{eval_file_name(cfg.eval.split)}.json"  # the file _subset_eval cuts
    full = cfg.data.eval_size or len(json.loads(split.read_text()))
    from .eval import run_all as eval_all
    rows = []
    base = Path("bench/.serving")
    for mode in ("per_adapter", "multi_lora", "merged"):
        c = deepcopy(cfg)
        c.eval.mode, c.eval.out_dir, c.eval.zero_shot, c.eval.icl = mode, str(base / mode / "objs"), False, False
        c.eval.merged_dir = str(base / mode / "merged")
        shutil.rmtree(base / mode, ignore_errors=True)
        c.data.out_dir = str(base / "data")
        _subset_eval(cfg, c.data.out_dir, n_rows)
        t0 = time.time()
        rc = eval_all(c)
        secs = time.time() - t0
        res = [json.loads(f.read_text()) for f in Path(c.eval.out_dir).glob("*.json")]
        merges = [json.loads(f.read_text()).get("seconds", 0) for f in Path(c.eval.merged_dir).glob("*/merged.json")]
        starts = {r["scoring"]["server_start_s"] for r in res}  # one value per server
        rps = sum(r["n_eval"] for r in res) / max(1e-9, sum(r["scoring"]["seconds"] for r in res))
        projected = sum(merges) + sum(starts) + len(res) * full / rps
        rows.append({"mode": mode, "runs": len(res), "rows_each": n_rows, "wall_s": round(secs, 1),
                     f"projected_s_at_{full}_rows": round(projected),
                     "merge_s": round(sum(merges), 1), "server_start_s": round(sum(starts), 1),
                     "rows_per_s": round(rps, 2),
                     "accuracy": " ".join(f"{r['metrics']['accuracy']:.3f}" for r in sorted(res, key=lambda r: r["train_rows"])),
                     "ok": rc == 0})
    key = f"projected_s_at_{full}_rows"
    per, best = rows[0], min(rows, key=lambda r: r[key])
    measured = min(rows, key=lambda r: r["wall_s"])
    return _report("serving", rows, f"at {n_rows} rows: fastest {measured['mode']}, per_adapter/fastest = "
                   f"{per['wall_s'] / measured['wall_s']:.2f}x; at {full} rows (projected): fastest {best['mode']}, "
                   f"per_adapter/fastest = {per[key] / best[key]:.2f}x")


def _subset_eval(cfg: Config, out_dir: str, n_rows: int) -> None:
    """A copy of the data folder whose evaluation split is its first n_rows (same train files)."""
    src, dst = Path(cfg.data.out_dir), Path(out_dir)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    from .fileio import dumps_json, sha256_file
    name = eval_file_name(cfg.eval.split)
    rows = json.loads((dst / f"{name}.json").read_text())[:n_rows]
    (dst / f"{name}.json").write_text(dumps_json(rows))
    man = json.loads((dst / "manifest.json").read_text())
    man["files"][name]["sha256"] = sha256_file(dst / f"{name}.json")
    (dst / "manifest.json").write_text(dumps_json(man))


# ---------------------------------------------------------------- train

TRAIN_VARIANTS = [  # (name, overrides): what each of the CPU speed-ups buys, same rows, same steps
    ("micro-batch 2 x 4, all logits", ["train.per_device_train_batch_size=2", "train.gradient_accumulation_steps=4",
                                       "train.labelled_logits_only=false"]),
    ("micro-batch 1 x 8, all logits", ["train.per_device_train_batch_size=1", "train.gradient_accumulation_steps=8",
                                       "train.labelled_logits_only=false"]),
    ("micro-batch 1 x 8, labelled logits", ["train.per_device_train_batch_size=1",
                                            "train.gradient_accumulation_steps=8", "train.labelled_logits_only=true"]),
]


def bench_train(cfg: Config, size: int | None = None, steps: int = 4, limit_s: int = 400) -> int:
    """One run of the demo's second size for `steps` optimizer steps (the first is slower: warm-up),
    through the real train step (a subprocess in its own folder, stopped after limit_s), once per
    variant in TRAIN_VARIANTS at fp32, then the config's own settings in bf16 where the CPU has it
    natively: samples/s, tokens/s, the losses (the variants must agree on them), peak RSS."""
    from .devices import cpu_has_native_bf16
    size = size or sorted(cfg.data.sizes)[min(1, len(cfg.data.sizes) - 1)]
    variants = [(name, sets + ["train.precision=fp32"]) for name, sets in TRAIN_VARIANTS]
    if cpu_has_native_bf16():
        variants.append(("the config's settings, bf16", ["train.precision=bf16"]))
    rows = []
    for i, (name, extra) in enumerate(variants):
        d = f"bench/.train/v{i}"
        shutil.rmtree(d, ignore_errors=True)
        sets = [f"data.sizes=[{size}]", f"data.seeds=[{cfg.data.seeds[0]}]", f"train.out_dir={d}", f"train.log_dir={d}",
                f"train.extra.max_steps={steps}", "train.save_steps=1000", "train.logging_steps=1", *extra]
        cmd = [sys.executable, "-m", "fewshot", "train", "--config", cfg.path]
        for x in sets:
            cmd += ["--set", x]
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            from . import procs
            procs.stop(proc)
            rc = None
        secs = time.time() - t0
        s = read_jsonl(Path(d) / "train_summary.jsonl")
        s = s[-1] if s else {}
        losses = [r["loss"] for r in read_jsonl(Path(d) / f"llm_train_{size}" / "trainer_log.jsonl") if "loss" in r] \
            if (Path(d) / f"llm_train_{size}" / "trainer_log.jsonl").exists() else []
        rt = s.get("train_runtime_s")
        rows.append({"variant": name, "rows": size, "steps": steps, "finished": rc == 0, "wall_s": round(secs, 1),
                     "s_per_step": round(rt / steps, 1) if rt else None, "samples_per_s": s.get("samples_per_s"),
                     "losses": [round(x, 3) for x in losses], "peak_rss_gb": s.get("peak_rss_gb")})
    shutil.rmtree("bench/.train", ignore_errors=True)  # the adapters are not the result; the figures are
    base, best = rows[0], rows[2]
    key = (f"labelled logits + micro-batch 1 x 8 vs 2 x 4 with all logits: "
           f"{best['samples_per_s'] / base['samples_per_s']:.2f}x samples/s, losses "
           f"{'equal' if best['losses'] == base['losses'] else 'DIFFER'}"
           if base["samples_per_s"] and best["samples_per_s"] else "a variant did not finish")
    return _report("train", rows, key)


# ---------------------------------------------------------------- study

def bench_study(cfg: Config) -> int:
    """Fresh data/objs, then study.sh; stage times from logs/study_times.jsonl."""
    if os.environ.get("FEWSHOT_BENCH_FRESH", "1") == "1":
        for d in (cfg.data.out_dir, cfg.eval.out_dir, cfg.train.out_dir, cfg.report.out_dir):
            Path(d).mkdir(parents=True, exist_ok=True)
            for child in Path(d).iterdir():  # empty it, keeping the tracked .gitkeep
                if child.name != ".gitkeep":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
    times = Path(cfg.train.log_dir) / "study_times.jsonl"
    start = len(read_jsonl(times))
    # study.sh runs exactly this config, --set and FEWSHOT_SET included (its path alone would drop them)
    resolved = save_resolved(cfg, cfg.train.log_dir, "bench_study.config.yaml")
    t0 = time.time()
    rc = subprocess.run(["bash", str(ROOT / "study.sh")], env={**os.environ, "CONFIG": str(resolved)}).returncode
    total = time.time() - t0
    stages = [{"stage": r["stage"], "seconds": r["seconds"]} for r in read_jsonl(times)[start:]]
    stages.append({"stage": "total", "seconds": round(total)})
    _report("study", stages, f"whole study: {total / 60:.1f} min (target 30), exit {rc}", cfg=cfg)
    return bench_profile(cfg) if rc == 0 else rc


# ---------------------------------------------------------------- profile

def _pct(gflops: float | None, probe: float) -> str:
    return f"{gflops:.0f} ({100 * gflops / probe:.0f}%)" if gflops and probe else "-"


def _lane_probe(probe: float, cores: list | None) -> float:
    """The probe's share for a run on a lane of the cores (side by side): the probe uses them all."""
    from .devices import usable_cpus
    return probe * len(cores) / len(usable_cpus()) if cores else probe


def _cores(cores: list | None) -> str:
    return ",".join(map(str, cores)) if cores else "all"


def profile_rows(cfg: Config, n_params: float, probe: float, enc_params: float = 0.0,
                 enc_probe: float | None = None) -> list[dict]:
    """One row per finished run of this config's objs/ and training log: where its seconds went, on
    which cores, and for the LLM how many model FLOP/s that was against the probe's share of those
    cores (4 x params per trained token:
    forward and the activations' backward, LoRA's weights being few; 2 x params per computed
    prompt or generated token; the prefix cache's tokens are not computed again); for the encoder,
    SetFit and the data step's embeddings from the tokens they read (`encoder_flops`), against the
    probe in their own precision (enc_probe)."""
    from .fileio import read_json
    trained = {r["run"]: r for r in read_jsonl(Path(cfg.train.log_dir) / "train_summary.jsonl")}
    rows = []
    for name, t in sorted(trained.items(), key=lambda kv: (kv[1].get("rows", 0), kv[0])):
        tok, secs = t.get("tokens_seen"), t.get("train_runtime_s")
        g = 4 * n_params * tok / secs / 1e9 if tok and secs else None
        rows.append({"run": name, "work": "LLM training", "seconds": round(t.get("wall_s") or 0),
                     "cores": _cores(t.get("cores")),
                     "detail": f"{tok or '?'} tokens, {tok / secs:.0f} tokens/s" if tok and secs else "-",
                     "GFLOP/s (of probe)": _pct(g, _lane_probe(probe, t.get("cores")))})
    for f in sorted(Path(cfg.eval.out_dir).glob("*.json")):
        r = read_json(f)
        if not isinstance(r, dict) or "method" not in r:
            continue
        if r["method"].startswith("llm_"):
            sc = dict(r.get("scoring") or {})
            if sc.get("first_on_server") is False and not sc.get("weights_reloaded"):  # counted with the first run
                sc["server_start_s"] = None
            tk = sc.get("tokens") or {}
            computed = tk.get("prompt_tokens", 0) - tk.get("cached_tokens", 0) + tk.get("generated_tokens", 0)
            g = 2 * n_params * computed / sc["seconds"] / 1e9 if tk and sc.get("seconds") else None
            parts = [f"merge {sc['merge_s']:.0f} s" if sc.get("merge_s") else None,
                     (f"weights reloaded {sc['server_start_s']:.1f} s" if sc.get("weights_reloaded") else
                      f"server start {sc.get('server_start_s', 0):.0f} s") if sc.get("server_start_s") else None,
                     f"scoring {sc.get('seconds', 0):.0f} s at {sc.get('rows_per_s') or '-'} rows/s",
                     (f"{tk['prompt_tokens']} prompt tokens ({100 * tk['cached_tokens'] / max(1, tk['prompt_tokens']):.0f}%"
                      f" from the prefix cache), {tk['generated_tokens']} generated") if tk else None]
            rows.append({"run": r["name"], "work": "LLM scoring",
                         "seconds": round(sum(sc.get(k) or 0 for k in ("merge_s", "server_start_s", "seconds"))),
                         "cores": _cores(sc.get("cores")), "detail": "; ".join(x for x in parts if x),
                         "GFLOP/s (of probe)": _pct(g, _lane_probe(probe, sc.get("cores")))})
        elif r.get("seconds") is not None:
            flops, detail = encoder_flops(cfg, r, enc_params)
            g = flops / r["seconds"] / 1e9 if flops and r["seconds"] else None
            rows.append({"run": r["name"], "work": r["method"], "seconds": round(r["seconds"]),
                         "cores": _cores(r.get("cores")), "detail": detail,
                         "GFLOP/s (of probe)": _pct(g, _lane_probe(enc_probe or probe, r.get("cores")))})
    for f in sorted((Path(cfg.data.out_dir) / "embeddings").glob("*.json")):  # the data step's frozen embeddings
        e = read_json(f)
        g = 2 * enc_params * e["tokens"] / e["seconds"] / 1e9 if enc_params and e.get("seconds") else None
        rows.append({"run": f"embeddings {f.stem}", "work": "embeddings", "seconds": round(e["seconds"]),
                     "cores": _cores(e.get("cores")), "detail": f"{e['rows']} rows, {e['tokens']} tokens, {e['precision']}",
                     "GFLOP/s (of probe)": _pct(g, _lane_probe(enc_probe or probe, e.get("cores")))})
    return rows


def encoder_flops(cfg: Config, r: dict, params: float) -> tuple[float | None, str]:
    """Model FLOPs of an encoder or SetFit run from the tokens it read (its `cut` record): 6 x params per
    trained token (every weight is trained), 2 x per encoded one; the encoder pushes its row passes
    through, SetFit 2 x iterations x rows pairs (4 texts a row), then encodes train and scored rows
    for its head. None where the run did not record its tokens (TF-IDF; runs before the record)."""
    from .estimate import encoder_row_passes
    cut, n = r.get("cut") or {}, r.get("train_rows") or 0
    if not params or "train_tokens" not in cut or not n:
        return None, "-"
    per_row = cut["train_tokens"] / n
    if r["method"] == "encoder":
        passes = encoder_row_passes(cfg.baselines, n)
        return (6 * params * per_row * passes + 2 * params * cut["eval_tokens"],
                f"{passes} row passes of ~{per_row:.0f} tokens, {cut['eval_tokens']} tokens scored")
    texts = 4 * cfg.baselines.setfit_iterations * n
    return (6 * params * per_row * texts + 2 * params * (cut["train_tokens"] + cut["eval_tokens"]),
            f"{texts} texts in pairs of ~{per_row:.0f} tokens, {cut['train_tokens'] + cut['eval_tokens']} tokens encoded")


def bench_profile(cfg: Config) -> int:
    """Where a finished study's time went, run by run, from what its steps recorded (no rerun):
    training tokens, merges, server starts, scoring with vLLM's own token counters, each baseline
    run; the LLM's model FLOP/s beside this CPU's matrix-product probe, so a stage far below the
    probe is where a speed-up may still be, and one near it only gets faster by doing less."""
    from .devices import encoder_bf16, precision_on
    from .estimate import model_params, probe_gflops
    from .models import encoder_path, model_path
    dtype = precision_on(cfg, "cpu")
    probe = probe_gflops("bf16" if dtype == "bf16" else "fp32")
    enc_probe = probe if encoder_bf16(cfg) == (dtype == "bf16") else probe_gflops("bf16" if encoder_bf16(cfg) else "fp32")
    enc = encoder_path(cfg)
    enc_params = model_params(enc, skip="embeddings.") if Path(enc).is_dir() else 0.0
    rows = profile_rows(cfg, model_params(model_path(cfg)), probe, enc_params, enc_probe)
    if not rows:
        raise FewshotError(f"bench profile: no finished runs in {cfg.eval.out_dir}/ or "
                           f"{cfg.train.log_dir}/train_summary.jsonl; run the study first")
    by_work: dict[str, int] = {}
    for r in rows:
        by_work[r["work"]] = by_work.get(r["work"], 0) + r["seconds"]
    # with runs side by side (cores other than "all") these are each run's own seconds: they overlap
    key = (f"probe {probe:.0f} GFLOP/s {dtype} on every core; run-seconds by work: "
           + ", ".join(f"{k} {v}" for k, v in sorted(by_work.items(), key=lambda kv: -kv[1])))
    return _report("profile", rows, key, {"probe_gflops": round(probe), "by_work_s": by_work}, cfg=cfg)


BENCHES = {"client": bench_client, "serving": bench_serving, "train": bench_train, "study": bench_study,
           "profile": bench_profile}


def run(cfg: Config, name: str | None) -> int:
    if name not in BENCHES:
        raise FewshotError(f"bench: name one of {', '.join(BENCHES)} (python -m fewshot bench client)")
    return BENCHES[name](cfg)
