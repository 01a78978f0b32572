"""The LLM + LoRA on random, typical and uncertain rows of the two extra real sets (docs/selection.md):
the study's own data and train steps, the runs trained on a GPU; scored there by greedy generation with
transformers + peft (vLLM is not installed on that machine: the same chat messages, rendered by the
model's own chat template as the server would, at temperature 0), then finished and tabled here.

    .venv/bin/python bench/selection_llm.py export               # bench/sets/{debates,rotten}/{train,test}.jsonl
    CONFIG=configs/selection_debates.yaml bash train.sh          # data step here; train step on a GPU
    python bench/selection_llm.py score CONFIG [KEY=VALUE...]    # on the GPU: each run's predictions.jsonl
    .venv/bin/python bench/selection_llm.py finish CONFIG [K=V]  # here: each run's result files, as eval.sh writes them
    .venv/bin/python bench/selection_llm.py table CONFIG...      # the LLM's table, gains paired by (seed, size)

The sets are selection_check.py's (the same pools and test rows); the study carves its valid split out of
each pool (data.valid_fraction), so the LLM's pool is 90% of the cheap methods'."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETS = ["debates", "rotten"]


def export(out: Path = Path("bench/sets")) -> None:
    """Each set's pool and test rows as JSONL files the data step reads (a folder with train.* and test.*)."""
    from fewshot.fileio import atomic_write_text
    from selection_check import load
    for name in SETS:
        tx, ty, vx, vy = load(name)
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for split, xs, ys in (("train", tx, ty), ("test", vx, vy)):
            atomic_write_text(d / f"{split}.jsonl", "".join(json.dumps({"text": x, "label": y}) + "\n"
                                                            for x, y in zip(xs, ys)))
        print(f"{d}: {len(tx)} pool rows, {len(vx)} test rows, labels {sorted(set(ty))}")


def _runs(cfg):
    """The config's LoRA runs that finished training. Not eval.planned_runs: that one asks for the whole
    adapter, and only each run's done.json comes back from the GPU to be finished here."""
    from fewshot.fileio import read_json
    from fewshot.runs import Run, run_dir, run_names
    out = []
    for name, size, seed, sel in run_names(cfg):
        done = run_dir(cfg, name) / "done.json"
        if done.exists():
            out.append(Run(name, size, seed, run_dir(cfg, name).resolve(), read_json(done)["hash"], selection=sel))
    return out


def _split(cfg):
    from fewshot.manifest import load_manifest
    from fewshot.runs import eval_file_name
    name = eval_file_name(cfg.eval.split)
    rows = json.loads((Path(cfg.data.out_dir) / f"{name}.json").read_text(encoding="utf-8"))
    m = load_manifest(cfg)
    return rows, m["labels"], m["files"][name]["sha256"]


def score(cfg, batch: int = 128, dtype: str = "bfloat16") -> None:
    """Every trained run's greedy answers on the scored split, one base model on the GPU, each adapter
    loaded in turn; predictions.jsonl as the client writes it, and the seconds beside it. bf16, as the
    study's server computes on a CPU with native bf16 (and vLLM's `auto` on a GPU for this fp32 checkpoint:
    half precision)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fewshot.fileio import atomic_write_json, atomic_write_text
    from fewshot.metrics import match_label
    from fewshot.prompt import chat_messages
    from fewshot.runs import out_paths

    rows, labels, _ = _split(cfg)
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU only to check this script on a run or two
    tok = AutoTokenizer.from_pretrained(cfg.model.name_or_path, padding_side="left")
    base = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path, dtype=getattr(torch, dtype)).to(dev).eval()
    prompts = [tok.apply_chat_template(chat_messages(r), add_generation_prompt=True, tokenize=False) for r in rows]
    for run in _runs(cfg):
        p = out_paths(cfg, run.name)
        if (p["dir"] / "gpu_score.json").exists():
            continue
        t0 = time.time()
        model = PeftModel.from_pretrained(base, str(run.adapter)).eval()
        answers = []
        for i in range(0, len(rows), batch):
            enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=cfg.eval.max_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            answers += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        base = model.unload()  # the base weights back, without this adapter's layers
        secs = time.time() - t0
        p["dir"].mkdir(parents=True, exist_ok=True)
        preds = [match_label(a, labels) for a in answers]
        atomic_write_text(p["preds"], "".join(json.dumps({"i": i, "raw": a, "pred": pr, "label": rows[i]["output"]}) + "\n"
                                              for i, (a, pr) in enumerate(zip(answers, preds))))
        atomic_write_json(p["dir"] / "gpu_score.json", {
            "scored": len(rows), "seconds": round(secs, 2), "rows_per_s": round(len(rows) / secs, 2),
            "scorer": f"transformers generate (greedy, {dtype}) + peft", "gpu": torch.cuda.get_device_name() if dev == "cuda" else "none: CPU"})
        acc = sum(r["output"] == pr for r, pr in zip(rows, preds)) / len(rows)
        print(f"[score] {run.name}: accuracy {acc:.3f} ({secs:.1f} s)", flush=True)


def finish(cfg) -> None:
    """The result files eval.sh writes (objs/<run>.json and .pkl), from the GPU's predictions."""
    from fewshot.eval import eval_hash, finish as finish_run
    from fewshot.fileio import read_json
    from fewshot.runs import out_paths
    rows, labels, split_sha = _split(cfg)
    for run in _runs(cfg):
        p = out_paths(cfg, run.name)
        if not (p["dir"] / "gpu_score.json").exists():
            print(f"[finish] {run.name}: not scored on the GPU yet")
            continue
        stats = read_json(p["dir"] / "gpu_score.json")
        finish_run(cfg, run, rows, labels, eval_hash(cfg, run, split_sha), "per_adapter", split_sha,
                   stats["scorer"], stats, 0.0, device=f"gpu ({stats['gpu']})")


def table(cfgs) -> str:
    """The LLM's accuracy per (strategy, size), mean (min-max) over the seeds, and each strategy's gain
    over random paired by (seed, size) with a 90% bootstrap interval: selection_check.py's layout."""
    import numpy as np

    from fewshot.results import load_results
    from selection_check import gain
    out = []
    for cfg in cfgs:
        res = [r for r in load_results(cfg.eval.out_dir) if r["method"] == "llm_lora"]
        runs = [{"strategy": r["selection"], "seed": r["seed"], "size": r["train_rows"],
                 "llm": r["metrics"]["accuracy"]} for r in res]
        sizes = sorted({r["size"] for r in runs})
        m = res[0]
        out += [f"**{cfg.name}** ({m['n_eval']} {m['split']} rows)", "",
                "| strategy | " + " | ".join(f"{n} rows" for n in sizes) + " | gain over random, 90% interval |",
                "|---|" + "---:|" * (len(sizes) + 1)]
        for s in ("random", "typical", "uncertain"):
            cells = []
            for n in sizes:
                v = [r["llm"] for r in runs if r["strategy"] == s and r["size"] == n]
                cells.append(f"{np.mean(v):.3f} ({min(v):.2f}–{max(v):.2f})" if v else "")
            g = "" if s == "random" else gain({"runs": runs}, "llm", s)
            out.append(f"| {s} | " + " | ".join(cells) + f" | {g} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    from fewshot.config import load_config
    what, paths = sys.argv[1], sys.argv[2:]
    sets = [a for a in paths if "=" in a]  # key=value overrides, as --set gives them to the study's steps
    if what == "export":
        export()
    elif what == "score":
        score(load_config(paths[0], sets))
    elif what == "finish":
        finish(load_config(paths[0], sets))
    elif what == "table":
        print(table([load_config(p) for p in paths]))
    else:
        raise SystemExit(__doc__)
