"""report/label_next.csv (and .jsonl): the rows to label next for the labelling plan, ranked by the plan's
selection, continuing the order its subsets came from, each with a stable row_id and an empty label
column for a person to fill; data.new_labels brings the filled file back (fewshot/rounds.py). The pool is
plan.pool (a file of unlabelled rows in the data's format) or the train rows no subset used; its
labels are never read (the uncertain strategy reads only the labels of rows already bought)."""
from __future__ import annotations

import io
import json
from pathlib import Path

from .fileio import atomic_write_json, atomic_write_text, read_json
from .manifest import TRAIN_ROWS, load_manifest
from .rounds import COLUMNS, ask_dir, ask_id, pool_texts, row_id
from .selection import LabelOracle, order as selection_order


def rank(cfg, plan: dict, out_dir) -> Path | None:
    """Write label_next.csv and label_next.jsonl (the plan's next rows: its label_more, else the rows held
    again), each row with its stable row_id and an empty label for a person to fill, and keep
    the ask in asks/<ask>.json so that the filled file can be checked when it comes back (data.new_labels)."""
    from datetime import datetime, timezone
    from .embeddings import embed
    import pandas as pd
    if not (Path(cfg.data.out_dir) / "manifest.json").exists():
        return None  # results read without their data folder (copied objs/): nothing to rank from
    man = load_manifest(cfg)
    sel = plan.get("selection", "random")
    rec = man.get("selection", {}).get(sel)
    rows_file = Path(cfg.data.out_dir) / TRAIN_ROWS
    if not rec or not rows_file.exists():
        return None
    seed = rec["seeds"][0]
    have = int(plan.get("have") or max(cfg.data.sizes))
    bought = rec["orders"][str(seed)][:have]
    train = read_json(rows_file)
    n_split = int(man.get("split_rows", {}).get("train", len(train)))  # past it: pool rows a round labelled
    q = int(plan.get("label_more") or have)  # no number from the plan: the rows held again (a doubling)
    if cfg.plan.pool:
        labelled = {rid for r in man.get("rounds", []) for rid in r["rows"] if rid.startswith("pool-")}
        pool = [(j, t) for j, t in enumerate(pool_texts(cfg.plan.pool, cfg.data.text_field))
                if row_id("pool", j, t) not in labelled]
        texts = [train[i]["text"] for i in bought] + [t for _, t in pool]
        labels = [train[i]["label"] for i in bought] + [None] * len(pool)
        start = list(range(len(bought)))
        ids = [None] * len(bought) + [row_id("pool", j, t) for j, t in pool]
        limit = len(texts)
    else:
        texts, labels = [r["text"] for r in train], [r["label"] for r in train]
        start = list(bought)
        ids = [row_id("train", i, t) if i < n_split else None for i, t in enumerate(texts)]
        limit = n_split  # the rows a round may ask for lie below it
    q = min(q, limit - sum(i < limit for i in start))
    if q <= 0:
        return None
    oracle = LabelOracle(labels)
    sizes = sorted(cfg.data.sizes)
    new = selection_order(sel, n_rows=len(texts), sizes=[s for s in sizes if s <= len(start)] + [len(start) + q],
                          seed=seed, oracle=oracle, stratify=False, embed=lambda: embed(cfg, texts),
                          length=len(start) + q, start=start)[len(start):]
    new = [i for i in new if ids[i] is not None][:q]
    rows = [ids[i] for i in new]
    ask = ask_id(sel, seed, have, rows)
    atomic_write_json(ask_dir(cfg) / f"{ask}.json", {
        "ask": ask, "selection": sel, "seed": seed, "have": have, "rows": rows,
        "pool": str(Path(cfg.plan.pool).expanduser().resolve()) if cfg.plan.pool else None,
        "method": plan.get("method"), "target": plan.get("target"), "p_reached": plan.get("p_reached"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    df = pd.DataFrame({"rank": range(1, len(new) + 1), "row_id": rows, "label": "", "text": [texts[i] for i in new],
                       "ask": ask})
    assert tuple(df.columns) == COLUMNS
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    path = Path(out_dir) / "label_next.csv"
    atomic_write_text(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                          for r in df.to_dict("records")))
    return path
