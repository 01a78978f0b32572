"""The data step: load a labelled text set (built-in, hub, or local files; `loading`), make it plain data and
its splits (`splits`), draw nested seeded few-shot subsets per strategy (`subsets`), add the rows labelling
rounds brought (`rounds`), measure every row in tokens (`token_counts`), audit it (`audit`), and write Alpaca
files plus the `dataset_info.json` LLaMA-Factory reads and a manifest that pins every file by sha256."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import rounds
from .audit import report as audit_report, summary_line
from .config import Config
from .errors import DataError
from .fileio import atomic_write_json, atomic_write_text, dumps_json, sha256_file
from .loading import check_labels, load_splits
from .manifest import AUDIT, TRAIN_ROWS
from .prompt import ALPACA_COLUMNS, alpaca_row, build_instruction
from .runs import eval_file_name, sizes_for, train_file_name
from .selection.random_order import prefix_order
from .splits import dedupe, neutralize_rows
from .subsets import all_seeds, select
from .token_counts import measure_tokens, model_tokenizer
from .tokens import control_strings, neutralize


def build(cfg: Config) -> dict:
    """Run the data step; returns the manifest. Everything is checked before anything is written."""
    d = cfg.data
    splits, origin, labels = load_splits(d)
    tok = model_tokenizer(cfg)
    controls = control_strings(tok)
    for lab in labels:
        if any(c in lab for c in controls):
            raise DataError(f"{origin['train']}: label {lab!r} holds the model's control token "
                            f"{next(c for c in controls if c in lab)!r}; rename the label")
    for split, rows in splits.items():
        for i, r in enumerate(rows):
            r["_src"] = f"{origin[split]}: row {i + 1}"
    control_found = neutralize_rows(splits, controls)
    check_labels(splits, origin, labels)  # the source's own splits, before duplicates move rows
    splits, emb, dups = dedupe(cfg, splits, origin)
    labels = check_labels(splits, origin, labels)
    n_train = len(splits["train"])
    for n in d.sizes:
        if n > n_train:
            raise DataError(f"data.sizes: size {n} is larger than the train split ({n_train} rows, "
                            f"{origin['train']})")

    instruction = build_instruction(labels)
    files: dict[str, list[dict]] = {}
    meta: dict[str, dict] = {}
    orders, selection = select(cfg, splits["train"], None if emb is None else emb["train"])
    # labelling rounds: the asked selection grows by the rows a person labelled (pool rows join train)
    extra, given, rounds_done = rounds.apply(cfg, rounds.read_rounds(cfg, labels), splits["train"], orders,
                                             lambda t: neutralize(t, controls)) if d.new_labels else ([], {}, [])
    train = splits["train"] + extra
    for (sel, seed), order in orders.items():
        lab = given.get((sel, seed), {})
        for n in sizes_for(cfg, sel, seed):
            name = train_file_name(n, seed, d, sel)
            files[name] = [alpaca_row(instruction, train[i]["text"], lab.get(i, train[i]["label"])) for i in order[:n]]
            meta[name] = {"kind": "train", "size": n, "seed": seed, "selection": sel}
    scored: dict[str, list[int]] = {}
    for split in ("valid", "test"):
        rows = splits[split]
        scored[split] = list(range(len(rows)))
        if d.eval_size is not None and d.eval_size < len(rows):
            order = prefix_order([r["label"] for r in rows], d.split_seed, d.stratify)
            scored[split] = sorted(order[:d.eval_size])
        files[eval_file_name(split)] = [alpaca_row(instruction, rows[i]["text"], rows[i]["label"]) for i in scored[split]]
        meta[eval_file_name(split)] = {"kind": split, "size": len(scored[split]), "of": len(rows)}

    # scored rows (0-based, as in the predictions) that have a duplicate in train
    dups["scored_with_train_duplicate"] = {split: [k for k, i in enumerate(scored[split]) if splits[split][i].get("_x")]
                                           for split in ("valid", "test")}
    token_stats = measure_tokens(cfg, files, tok)
    report = audit_report(cfg, splits, labels, emb, dups, control_found, scored,
                          {n: [r["output"] for r in rows] for n, rows in files.items() if meta[n]["kind"] == "train"})
    out = Path(d.out_dir)
    dataset_info = {}
    for name, rows in files.items():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{name}.json", dumps_json(rows))
        dataset_info[name] = {"file_name": f"{name}.json", "formatting": "alpaca", "columns": dict(ALPACA_COLUMNS)}
        meta[name]["class_counts"] = dict(sorted(Counter(r["output"] for r in rows).items()))
        meta[name]["sha256"] = sha256_file(out / f"{name}.json")
        meta[name]["tokens"] = token_stats[name]
    atomic_write_json(out / "dataset_info.json", dataset_info)
    # the whole train split, in row order: the labelling plan ranks the rows not yet used from it
    atomic_write_text(out / TRAIN_ROWS, dumps_json([{"text": r["text"], "label": r["label"]} for r in train]))
    atomic_write_json(out / AUDIT, report)
    for w in report["warnings"]:
        print(f"data: warning: {w}")
    print(f"data: audit: {summary_line(report)} ({out / AUDIT})")
    manifest = {
        "source": d.source,
        "hub_config": d.hub_config,
        "origin": origin,
        "config_hash": cfg.hash("data"),
        "labels": labels,
        "split_rows": {s: len(splits[s]) for s in ("train", "valid", "test")},
        "sizes": sorted(d.sizes),
        "seeds": all_seeds(cfg),
        "stratify": d.stratify,
        # which rows each strategy chose (train row numbers, 0-based, in order: every prefix a subset)
        # and which labels it read to choose them
        "selection": {sel: {**rec, "orders": {str(s): orders[(sel, s)][:max(sizes_for(cfg, sel, s))] for s in rec["seeds"]}}
                      for sel, rec in selection.items()},
        # each labelling round (data.new_labels): its file and hash, the ask it answered, the rows it added
        "rounds": rounds_done,
        "files": meta,
        "duplicates": {k: report["duplicates"][k] for k in ("action", "grouped", "dropped", "straddling_groups")},
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
