"""The eval step: serve every trained adapter (and the base model as the zero-shot point, n = 0)
with a real vLLM server, score the evaluation split through the client, and write
`objs/<run>.pkl` (the original study's EvalData fields) and `objs/<run>.json` (the same numbers + manifest).

Serving modes (eval.mode): per_adapter (the original study's way: one LoRA server per run), multi_lora
(one server holding every adapter), merged (LLaMA-Factory's export per run, served plain; on a CPU the
adapters are merged in one process, and each lane keeps one server and loads the next merged adapter
into it: eval.reload_weights)."""
from __future__ import annotations

import json
import pickle
import threading
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import yaml

from . import procs
from .client import score
from .icl import icl_runs, model_context
from .config import Config
from .manifest import load_manifest
from .devices import cpu_lanes, cpu_serving_dtype, gpu_serving_dtype, has_gpu, lane_words, pin, serving_dtype
from .envs import env_bin, subprocess_env
from .errors import FewshotError
from .fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, read_jsonl
from .locks import Busy, hold
from .metrics import compute
from .runs import (ZERO_SHOT, ZERO_SHOT_CONSTRAINED, EvalData, Run, eval_file_name, eval_lock, eval_names, merge_marker,
                   out_paths, run_dir, run_names, shard_of)
from .serve import ServerError, VLLMServer, free_port, new_api_key, reloads_weights, server_counters, vllm_command
from .models import adapter_finished, check_model_path, model_path
from .provenance import run_manifest


def planned_runs(cfg: Config, only: list[str] | None = None) -> tuple[list[Run], list[str]]:
    """Runs ready to score, and the names of configured LoRA runs that have no finished adapter."""
    runs, missing = [], []
    if cfg.eval.zero_shot:  # the base model twice: free answers, and answers restricted to the labels
        runs.append(Run(ZERO_SHOT, 0, None, None, "base", "zero_shot", False))
        runs.append(Run(ZERO_SHOT_CONSTRAINED, 0, None, None, "base", "zero_shot", True))
    if cfg.eval.icl:
        runs += icl_runs(cfg)
    for name, size, seed, sel in run_names(cfg):
        done = run_dir(cfg, name) / "done.json"
        if adapter_finished(run_dir(cfg, name)):
            runs.append(Run(name, size, seed, run_dir(cfg, name).resolve(), read_json(done)["hash"],
                            constrained=cfg.eval.constrained, selection=sel))
        else:
            missing.append(name)
    if only:
        runs = [r for r in runs if r.name in only]
    return runs, missing


def eval_hash(cfg: Config, run: Run, split_sha: str) -> str:
    import hashlib
    key = [run.train_hash, split_sha, cfg.model.name_or_path, run.constrained, cfg.eval.max_tokens,
           cfg.eval.mode if run.adapter else "base", cfg.eval.server_args, serving_dtype(cfg)]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def is_scored(cfg: Config, run: Run, h: str) -> bool:
    p = out_paths(cfg, run.name)
    return p["json"].exists() and p["pkl"].exists() and read_json(p["json"]).get("eval_hash") == h


def prepare_predictions(cfg: Config, run: Run, h: str) -> None:
    """Keep partial predictions only if they belong to this exact run configuration."""
    p = out_paths(cfg, run.name)
    state = read_json(p["state"]) if p["state"].exists() else {}
    if state.get("eval_hash") != h and p["preds"].exists():
        p["preds"].unlink()
    atomic_write_json(p["state"], {"eval_hash": h})


# ---------------------------------------------------------------- merging (mode: merged)

_LIVE: set = set()  # merges and servers running now (several at once in CPU lanes): stopped on Ctrl-C


_MERGING = threading.Lock()  # one merge process at a time: it merges the other lanes' adapters too
_BATCHED: set[str] = set()  # merges already tried in a batch: one that failed is tried again alone


def _merged(cfg: Config, run: Run) -> bool:
    marker = merge_marker(cfg, run.name)
    return marker.exists() and read_json(marker).get("hash") == run.train_hash


def merge(cfg: Config, run: Run, cpus: list[int] | None = None, batch: list[Run] = ()) -> Path:
    """Base + adapter merged into one folder by LLaMA-Factory's export; skipped when already merged.
    batch: other adapters to merge in the same process, one start-up for all (fewshot/train_env/
    lf_export.py: ~7 of the CLI's ~9 s per SmolLM2 adapter on one core); cpus: a lane's cores."""
    out = merge_marker(cfg, run.name).parent
    with _MERGING:
        if _merged(cfg, run):
            return out.resolve()
        todo = [run] + [r for r in batch if r.name != run.name and str(merge_marker(cfg, r.name)) not in _BATCHED
                        and not _merged(cfg, r)]
        _BATCHED.update(str(merge_marker(cfg, r.name)) for r in todo)
        specs = {}
        for r in todo:
            spec = {"model_name_or_path": model_path(cfg), "adapter_name_or_path": str(r.adapter),
                    "template": cfg.model.template, "finetuning_type": "lora", "trust_remote_code": True,
                    "export_dir": str(merge_marker(cfg, r.name).parent.resolve()), "export_size": 5,
                    "export_device": "cpu", "export_legacy_format": False}
            specs[r.name] = Path(cfg.eval.merged_dir) / f"{r.name}.export.yaml"
            atomic_write_text(specs[r.name], yaml.safe_dump(spec, sort_keys=False))
        log = Path(cfg.train.log_dir) / f"{run.name}.export.log"
        start = log.stat().st_size if log.exists() else 0
        t0 = time.time()
        proc = procs.start([env_bin("train", "python"), "-m", "fewshot.train_env.lf_export",
                            *[str(p.resolve()) for p in specs.values()]], log,
                           env=subprocess_env(**({"OMP_NUM_THREADS": str(len(cpus))} if cpus else {})))
        if cpus:
            pin(proc.pid, cpus)
        rc = procs.wait(proc, _LIVE)
        with open(log, "rb") as f:
            f.seek(start)
            said = f.read().decode("utf-8", "replace")
        each = round((time.time() - t0) / len(todo), 1)  # the start-up shared out among the batch
        for r in todo:
            if f"[lf_export] exported {specs[r.name].resolve()}\n" in said:
                atomic_write_json(merge_marker(cfg, r.name), {"hash": r.train_hash, "seconds": each, "batch": len(todo)})
    if not _merged(cfg, run):
        raise FewshotError(f"{run.name}: LLaMA-Factory's export failed ({rc}); last lines of {log}:\n"
                           f"{procs.tail(log)}")
    return out.resolve()


# ---------------------------------------------------------------- scoring

def _score_and_save(cfg: Config, run: Run, server: VLLMServer, served: str, rows: list[dict], labels: list[str],
                    h: str, mode: str, split_sha: str, server_seconds: float, first_on_server: bool = True,
                    weights: str | None = None) -> dict:
    p = out_paths(cfg, run.name)
    e = cfg.eval
    before = server_counters(server.base_url, server.api_key)
    stats = score(server.base_url, served, rows, labels, p["preds"], concurrency=e.concurrency,
                  constrained=run.constrained, max_tokens=e.max_tokens, timeout=e.request_timeout,
                  max_retries=e.max_retries, desc=run.name, api_key=server.api_key, demos=run.demos)
    after = server_counters(server.base_url, server.api_key)
    if before and after and stats.get("scored"):  # the runs of one server are scored one after another
        stats["tokens"] = {k: int(after[k] - before[k]) for k in after}
    stats["first_on_server"] = first_on_server  # the server's start-up is counted once, with this run
    if weights:  # a kept server (eval.reload_weights): the merged folder it answered with, and whether it was
        stats["weights"], stats["weights_reloaded"] = weights, not first_on_server  # loaded in place (seconds: server_start_s)
    stats["cores"] = server.cpus  # its lane, where servers ran side by side (None: every core)
    stats["engine_cores"] = server.engine_cores()  # where its processes may run, read back from the OS
    return finish(cfg, run, rows, labels, h, mode, split_sha, served, stats, server_seconds)


def finish(cfg: Config, run: Run, rows: list[dict], labels: list[str], h: str, mode: str, split_sha: str,
           served: str, stats: dict, server_seconds: float, device: str | None = None) -> dict:
    """Turn predictions.jsonl into the run's .json and .pkl (atomic). device: where the answers were
    made, when not on this machine (bench/selection_llm.py scores on a GPU and finishes here)."""
    p = out_paths(cfg, run.name)
    by_row = {r["i"]: r for r in read_jsonl(p["preds"])}
    if len(by_row) < len(rows):
        raise FewshotError(f"{run.name}: {len(rows) - len(by_row)} rows still unscored in {p['preds']}")
    ordered = [by_row[i] for i in range(len(rows))]
    preds = [r["pred"] for r in ordered]
    golds = [r["output"] for r in rows]
    metrics = compute(preds, golds, labels, n_boot=cfg.eval.bootstrap)
    invalid = [r["raw"] for r in ordered if r["pred"] is None]
    ed = EvalData(name=run.name, in_cnt=len(rows) - len(invalid), not_in_cnt=len(invalid),
                  preds=[r["raw"] for r in ordered], labels=golds, not_in_texts=invalid,
                  eval={k: metrics[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")})
    train = read_json(run.adapter / "done.json") if run.adapter and (run.adapter / "done.json").exists() else {}
    device = device or ("gpu" if has_gpu() else "cpu")
    marker = merge_marker(cfg, run.name)
    merge_s = read_json(marker).get("seconds") if mode == "merged" and run.adapter and marker.exists() else None
    result = {
        "name": run.name, "method": run.method, "train_rows": run.size,
        "seed": run.seed, "selection": run.selection, "split": cfg.eval.split, "n_eval": len(rows), "mode": mode, "served_model": served,
        "base_model": cfg.model.name_or_path, "constrained": run.constrained, "metrics": metrics,
        "in_cnt": ed.in_cnt, "not_in_cnt": ed.not_in_cnt, "invalid_answers": invalid,
        "scoring": {**stats, "server_start_s": round(server_seconds, 1), "merge_s": merge_s, "device": device,
                    "dtype": serving_dtype(cfg) if device in ("gpu", "cpu") else "auto"},
        "train_seconds": train.get("wall_s"), "train_device": train.get("device"), "train_cores": train.get("cores"),
        "icl": run.icl or None, "eval_hash": h, "manifest": run_manifest(cfg, split_sha),
    }
    atomic_write_bytes(p["pkl"], pickle.dumps(ed, protocol=pickle.HIGHEST_PROTOCOL))
    atomic_write_json(p["json"], result)
    m = metrics
    print(f"[eval] {run.name}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
          f"invalid {m['invalid']}/{m['n']} ({stats.get('rows_per_s') or '-'} rows/s)", flush=True)
    return result


# ---------------------------------------------------------------- modes

def run_all(cfg: Config, only: list[str] | None = None, shard: str | None = None) -> int:
    manifest = load_manifest(cfg)
    check_model_path(cfg)
    split_name = eval_file_name(cfg.eval.split)
    split_file = Path(cfg.data.out_dir) / f"{split_name}.json"
    rows = json.loads(split_file.read_text(encoding="utf-8"))
    split_sha = manifest["files"][split_name]["sha256"]
    labels = manifest["labels"]
    runs, missing = planned_runs(cfg, only)
    if shard:  # split the configured list, so every shard agrees on it whatever is trained yet
        mine = set(shard_of(eval_names(cfg), shard))
        runs, missing = [r for r in runs if r.name in mine], [m for m in missing if m in mine]
    if missing:
        print(f"[eval] not trained yet (run train.sh first): {', '.join(missing)}")
    todo = []
    for run in runs:
        h = eval_hash(cfg, run, split_sha)
        if not is_scored(cfg, run, h):
            todo.append((run, h))
    if not todo:
        print(f"[eval] nothing to do: all {len(runs)} runs already scored on {split_name} "
              f"({cfg.eval.out_dir}/)")
        return 0
    check_answer_room(cfg, labels)  # only when there is scoring to do: it loads the tokenizer
    env_bin("serve", "python")  # a node without the envs says so once, before any server starts
    if any(r.adapter is not None for r, _ in todo) and cfg.eval.mode == "merged":
        env_bin("train", "python")  # merges run in the training env
    print(f"[eval] {len(todo)} run(s) to score on {len(rows)} rows of {split_name}, mode {cfg.eval.mode}")
    failed: dict[str, str] = {}
    base = [t for t in todo if t[0].adapter is None]
    adapters = [t for t in todo if t[0].adapter is not None]
    ctx = dict(cfg=cfg, rows=rows, labels=labels, split_sha=split_sha, failed=failed,
               tokens=manifest["files"][split_name].get("tokens", {}),
               merge_batch=[r for r, _ in adapters] if cfg.eval.mode == "merged" and not has_gpu() else [])
    groups = [todo] if cfg.eval.mode == "multi_lora" else ([base] if base else []) + [[t] for t in adapters]
    lanes = [] if has_gpu() else cpu_lanes(cfg.eval.cpu_parallel, len(groups))
    done = [0]

    def one(g, cpus=None):
        print(f"[eval] run{'s' if len(g) > 1 else ''} {done[0] + 1}{f'-{done[0] + len(g)}' if len(g) > 1 else ''} "
              f"of {len(todo)}: {', '.join(r.name for r, _ in g)}" + (f" (cores {cpus})" if cpus else ""), flush=True)
        done[0] += len(g)
        _serve_group(g, lora=cfg.eval.mode == "multi_lora", cpus=cpus, **ctx)
        return "done"
    try:  # the base-model runs share one server; each adapter gets its own (one for all in multi_lora)
        if lanes:
            from .schedule import run_on_slots
            kept = " (merged adapters: one kept server per lane, eval.reload_weights)" if reloads_weights(cfg.eval) else ""
            print(f"[eval] {len(groups)} group(s) of runs, {len(lanes)} at a time on the CPU: {lane_words(lanes)} "
                  f"(eval.cpu_parallel){kept}", flush=True)
            # heaviest first: the base model's server scores several runs, an adapter's one (and a merge)
            jobs = [(g[0][0].name, len(g) + 0.5 * (g[0][0].adapter is not None), g) for g in groups]
            status = run_on_slots(jobs, lanes, one,
                                  lambda: [procs.stop(p) for p in list(_LIVE)])
            for (name, _, g) in jobs:  # an unexpected error in a lane: its runs failed
                if status.get(name) == "failed":
                    for run, _ in g:
                        failed.setdefault(run.name, "failed in its lane (see the [schedule] line above)")
        else:
            for g in groups:
                one(g)
    except KeyboardInterrupt:
        print("[eval] interrupted: predictions so far are saved; rerun to resume", flush=True)
        raise
    finally:
        stop_kept()
    for name, err in failed.items():
        print(f"[eval] FAILED {name}: {err}", flush=True)
    return 1 if failed else 0


def _log(cfg: Config, name: str) -> Path:
    return Path(cfg.train.log_dir) / f"{name}.serve.log"


def check_answer_room(cfg: Config, labels: list[str]) -> None:
    """eval.max_tokens caps every answer: a label that needs more tokens could never be answered
    whole, and every row of its class would count as invalid without a word."""
    from .tokens import answer_len, tokenizer
    tok = tokenizer(cfg.model.name_or_path)
    need = {lab: answer_len(tok, lab) for lab in labels}
    longest = max(need, key=need.get)
    if need[longest] > cfg.eval.max_tokens:
        raise FewshotError(f"label {longest!r} is {need[longest]} tokens with the end of turn, more than "
                           f"eval.max_tokens={cfg.eval.max_tokens}: every answer naming it would be cut and "
                           f"counted invalid; set eval.max_tokens to {need[longest]} or more")


def context_needed(cfg: Config, runs: list[Run], tokens: dict) -> int:
    """The served context (--max-model-len): the longest prompt, demonstrations included, plus the
    answer, rounded up to 256 tokens (2048 where the manifest predates token counts). A prompt
    that does not fit the model's own context is an error naming its row."""
    if not tokens.get("max_prompt"):
        return 2048
    demos = max((r.icl.get("tokens", 0) for r in runs), default=0)
    need = tokens["max_prompt"] + demos + cfg.eval.max_tokens
    limit = model_context(cfg)
    if need > limit:
        raise FewshotError(f"row {tokens.get('longest_prompt_row', '?')} of {eval_file_name(cfg.eval.split)}.json "
                           f"needs {need} tokens ({tokens['max_prompt']} prompt + {demos} of demonstrations + "
                           f"{cfg.eval.max_tokens} answer), more than the model's context of {limit}; lower "
                           f"data.max_tokens or eval.icl_max_tokens")
    return min(limit, -(-need // 256) * 256)


# ---------------------------------------------------------------- kept servers (eval.reload_weights)

_KEPT: dict[tuple, tuple[VLLMServer, int]] = {}  # a lane's cores -> its merged-mode server and served context
_KEPT_LOCK = threading.Lock()
MERGED_SERVED = "merged"  # the name a kept server answers under; each run records the folder it served


def _kept_server(cfg: Config, cpus: list[int] | None, model: str, make, max_model_len: int
                 ) -> tuple[VLLMServer, float, bool]:
    """The lane's server, serving `model` (a merged folder): the one the lane kept, its weights reloaded
    in place where it serves the same context, else a new one, kept for the lane's next adapter.
    Returns the server, the seconds its start or reload took, and whether it was reloaded."""
    key = tuple(cpus or ())
    with _KEPT_LOCK:
        old = _KEPT.pop(key, None)
    if old:
        server, served_len = old
        if served_len == max_model_len and server.alive():
            try:
                seconds = server.reload(model, cfg.eval.server_start_timeout)
                with _KEPT_LOCK:
                    _KEPT[key] = (server, max_model_len)
                return server, seconds, True
            except ServerError as err:
                print(f"[eval] a kept server could not reload {model}; starting a new one: {err}", flush=True)
        _LIVE.discard(server.proc)
        server.stop()
    port = free_port()
    log = _log(cfg, "merged_" + ("cores_" + "_".join(map(str, cpus)) if cpus else "server"))
    server = VLLMServer(make(port, MERGED_SERVED), port, log, cfg.eval.server_start_timeout, api_key=new_api_key(),
                        cpus=cpus, reloadable=True)
    t0 = time.time()
    server.__enter__()
    _LIVE.add(server.proc)
    with _KEPT_LOCK:
        _KEPT[key] = (server, max_model_len)
    return server, time.time() - t0, False


def stop_kept() -> None:
    """Stop every lane's kept server (end of the eval step, also after an error or Ctrl-C)."""
    with _KEPT_LOCK:
        kept = list(_KEPT.values())
        _KEPT.clear()
    for server, _ in kept:
        _LIVE.discard(server.proc)
        server.stop()


def _serve_group(group, cfg: Config, rows, labels, split_sha, failed, tokens, lora: bool = False,
                 cpus: list[int] | None = None, merge_batch: list[Run] = ()) -> None:
    """Start one server for these runs (one adapter merged or as LoRA, or the base model), score
    each run that no other process holds, stop the server; a merged adapter where weights are reloaded
    goes to the lane's kept server instead (stopped at the step's end). cpus: the lane's cores."""
    e = cfg.eval
    with ExitStack() as locks:
        mine = []
        for run, h in group:
            try:
                locks.enter_context(hold(eval_lock(cfg, run.name)))
            except Busy as b:
                print(f"[eval] {run.name}: skipped, another process scores it ({b})", flush=True)
                continue
            if is_scored(cfg, run, h):  # another process (a second array over this folder) finished it meanwhile
                print(f"[eval] {run.name}: skipped, another process scored it meanwhile", flush=True)
                continue
            prepare_predictions(cfg, run, h)
            mine.append((run, h))
        if not mine:
            return
        first = mine[0][0]
        try:
            adapters = {r.name: str(r.adapter) for r, _ in mine if r.adapter is not None}
            if lora or (e.mode == "per_adapter" and adapters):
                model, loras = model_path(cfg), adapters or None
            elif adapters:  # merged
                model, loras = str(merge(cfg, first, cpus, merge_batch)), None
            else:
                model, loras = model_path(cfg), None
            mml = context_needed(cfg, [r for r, _ in mine], tokens)
            make = lambda port, served: vllm_command(
                model, served, port, loras, cfg.train.lora_rank, e.server_args, cpu_dtype=cpu_serving_dtype(cfg),
                gpu_dtype=gpu_serving_dtype(cfg), max_model_len=mml, in_flight=e.concurrency)
            kept = bool(adapters) and not loras and reloads_weights(e)
            if kept:  # one server per lane for every merged adapter it scores
                server, start, reloaded = _kept_server(cfg, cpus, model, make, mml)
                scope, served_base = nullcontext(), MERGED_SERVED
            else:
                served_base = first.name if adapters and not loras else cfg.model.served_name
                port = free_port()
                log = _log(cfg, "multi_lora" if lora else first.name if adapters else "base_model")
                t0, reloaded = time.time(), False
                scope = server = VLLMServer(make(port, served_base), port, log, e.server_start_timeout,
                                            api_key=new_api_key(), cpus=cpus)
            with procs.TermAsInterrupt(), scope:
                if not kept:
                    _LIVE.add(server.proc)
                    start = time.time() - t0
                try:
                    for k, (run, h) in enumerate(mine):
                        # an adapter is served under its run's name (as a LoRA, or as the merged model)
                        served = served_base if kept else run.name if run.adapter is not None else cfg.model.served_name
                        try:
                            _score_and_save(cfg, run, server, served, rows, labels, h, e.mode, split_sha, start,
                                            first_on_server=k == 0 and not reloaded, weights=model if kept else None)
                        except FewshotError as err:
                            failed[run.name] = str(err)
                finally:
                    if not kept:
                        _LIVE.discard(server.proc)
        except FewshotError as err:  # merge or server failed: every run of this group failed with it
            for run, _ in mine:
                failed.setdefault(run.name, str(err))
