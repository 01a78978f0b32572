"""report/label_next.csv: the rows to label next for the labelling plan, ranked by the strategy that
measured best for the plan's method, continuing the order its subsets came from. The pool is
plan.pool (a file of unlabelled rows in the data's format) or the train rows no subset used; its
labels are never read (the uncertain strategy reads only the labels of rows already bought)."""
from __future__ import annotations

import io
from pathlib import Path

from .errors import DataError
from .fileio import atomic_write_text, read_json
from .manifest import TRAIN_ROWS, load_manifest
from .selection import LabelOracle, order as selection_order


def _pool_file(cfg) -> list[str]:
    import pandas as pd
    p = Path(cfg.plan.pool).expanduser()
    if not p.exists():
        raise DataError(f"plan.pool: file not found: {p}")
    readers = {".csv": pd.read_csv, ".jsonl": lambda f: pd.read_json(f, lines=True), ".json": pd.read_json,
               ".parquet": pd.read_parquet}
    if p.suffix.lower() not in readers:
        raise DataError(f"plan.pool: {p}: unsupported format '{p.suffix}' (use .csv, .json, .jsonl or .parquet)")
    df = readers[p.suffix.lower()](p)
    col = cfg.data.text_field
    if col not in df.columns:
        raise DataError(f"plan.pool: {p}: no column '{col}' (data.text_field); columns are {list(df.columns)}")
    texts = []
    for i, t in enumerate(df[col]):
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"plan.pool: {p}: row {i + 1}: empty or missing text in column '{col}'")
        texts.append(" ".join(t.split()))
    return texts


def rank(cfg, plan: dict, out_dir) -> Path | None:
    """Write label_next.csv: the plan's next rows (its label_more; else the largest subset size again)."""
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
    q = int(plan.get("label_more") or max(cfg.data.sizes))
    if cfg.plan.pool:
        pool = _pool_file(cfg)
        texts = [train[i]["text"] for i in bought] + pool
        labels = [train[i]["label"] for i in bought] + [None] * len(pool)
        start, where = list(range(len(bought))), f"{Path(cfg.plan.pool).name} row"
        row_of = lambda i: i - len(bought) + 1
    else:
        texts, labels = [r["text"] for r in train], [r["label"] for r in train]
        start, where = list(bought), "train row"
        row_of = lambda i: i + 1
    q = min(q, len(texts) - len(start))
    if q <= 0:
        return None
    oracle = LabelOracle(labels)
    sizes = sorted(cfg.data.sizes)
    new = selection_order(sel, n_rows=len(texts), sizes=[s for s in sizes if s <= len(start)] + [len(start) + q],
                          seed=seed, oracle=oracle, stratify=False, embed=lambda: embed(cfg, texts),
                          length=len(start) + q, start=start)[len(start):len(start) + q]
    df = pd.DataFrame({"rank": range(1, len(new) + 1), where: [row_of(i) for i in new],
                       "text": [texts[i][:300] for i in new], "strategy": sel})
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    path = Path(out_dir) / "label_next.csv"
    atomic_write_text(path, buf.getvalue())
    return path
