"""The data step: load a labelled text set (built-in, hub, or local files) with `datasets`,
make the splits it lacks, draw nested seeded few-shot subsets, and write Alpaca files plus the
`dataset_info.json` LLaMA-Factory reads and a manifest that pins every file by sha256."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import synthetic_data
from .config import Config, DataConfig
from .errors import DataError
from .fileio import atomic_write_json, atomic_write_text, dumps_json, sha256_file
from .models import check_model_path
from .prompt import ALPACA_COLUMNS, alpaca_row, build_instruction
from .runs import RANDOM, eval_file_name, subset_seeds, train_file_name
from .selection import LabelOracle, order as selection_order
from .selection.random_order import prefix_order
from .manifest import TRAIN_ROWS

LOCAL_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test"}


# ---------------------------------------------------------------- loading

def _is_local(source: str) -> bool:
    p = Path(source)
    return p.exists() or p.suffix.lower() in LOCAL_FORMATS or "/" in source and source.startswith((".", "/", "~"))


def _local_files(source: str) -> dict[str, Path]:
    """split name -> file for a local file (one 'train' split) or a folder of split files."""
    p = Path(source).expanduser()
    if not p.exists():
        raise DataError(f"data file not found: {p} (data.source)")
    if p.is_file():
        if p.suffix.lower() not in LOCAL_FORMATS:
            raise DataError(f"{p}: unsupported format '{p.suffix}' (use .csv, .json, .jsonl or .parquet)")
        return {"train": p}
    found: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        split = SPLIT_ALIASES.get(f.stem.lower())
        if split and f.suffix.lower() in LOCAL_FORMATS:
            if split in found:
                raise DataError(f"{p}: two files for split '{split}': {found[split].name}, {f.name}")
            found[split] = f
    if "train" not in found:
        raise DataError(f"{p}: no train file (expected train.csv/.json/.jsonl/.parquet in the folder)")
    return found


def _load_local(source: str) -> dict:
    import datasets
    out = {}
    for split, f in _local_files(source).items():
        try:
            ds = datasets.load_dataset(LOCAL_FORMATS[f.suffix.lower()], data_files=str(f), split="train")
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(f"{f}: cannot read as {LOCAL_FORMATS[f.suffix.lower()]}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from None
        out[split] = (ds, str(f))
    return out


def _load_hub(cfg: DataConfig) -> dict:
    import datasets
    try:
        dd = datasets.load_dataset(cfg.source, cfg.hub_config)
    except Exception as e:
        raise DataError(f"cannot load dataset '{cfg.source}' (config {cfg.hub_config!r}) from the hub or its "
                        f"cache: {type(e).__name__}: {e}") from None
    out = {}
    for name, ds in dd.items():
        split = SPLIT_ALIASES.get(name)
        if split:
            out[split] = (ds, f"{cfg.source}[{name}]")
    if "train" not in out:
        raise DataError(f"dataset '{cfg.source}' has no train split (has {list(dd)})")
    return out


def _rows(ds, where: str, cfg: DataConfig) -> tuple[list[dict], list[str] | None]:
    """Validated {'text','label'} rows of one split, and the label names the source declares."""
    cols = list(ds.column_names)
    for flag, col in (("data.text_field", cfg.text_field), ("data.label_field", cfg.label_field)):
        if col not in cols:
            raise DataError(f"{where}: no column '{col}' ({flag}); columns are {cols}")
    feat = ds.features[cfg.label_field]
    declared = list(feat.names) if hasattr(feat, "names") else cfg.label_names
    rows = []
    for i, (text, label) in enumerate(zip(ds[cfg.text_field], ds[cfg.label_field])):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: row {i + 1}: empty or missing text in column '{cfg.text_field}'")
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{where}: row {i + 1}: empty or missing label in column '{cfg.label_field}'")
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            label = str(label)
        if isinstance(label, int) and declared is not None:
            if not 0 <= label < len(declared):
                raise DataError(f"{where}: row {i + 1}: label id {label} outside the {len(declared)} "
                                f"label names (data.label_names)")
            label = declared[label]
        rows.append({"text": " ".join(text.split()), "label": str(label).strip()})
    return rows, declared


def load_splits(cfg: DataConfig) -> tuple[dict[str, list[dict]], dict[str, str], list[str]]:
    """(rows per split, where each split came from, label order)."""
    if cfg.source == "builtin":
        raise DataError("data.source: 'builtin' (the old synthetic set) is gone; use 'debian' (the shipped real "
                        "set) or 'synthetic' (keyword soup, for unit tests only)")
    if cfg.source == "synthetic":
        rows = synthetic_data.generate(cfg.synthetic_rows)
        return {"train": rows}, {"train": "synthetic"}, list(synthetic_data.LABELS)
    if cfg.source == "debian":
        from .corpus import debian_sections as deb
        splits = {k: [{"text": r["text"], "label": r["label"]} for r in v] for k, v in deb.load().items()}
        return splits, {k: f"debian[{k}]" for k in splits}, list(deb.SECTIONS)
    raw = _load_local(cfg.source) if _is_local(cfg.source) else _load_hub(cfg)
    splits, origin, declared = {}, {}, None
    for split, (ds, where) in raw.items():
        splits[split], d = _rows(ds, where, cfg)
        origin[split] = where
        declared = declared or d
    labels = list(declared) if declared else sorted({r["label"] for r in splits["train"]})
    return splits, origin, labels


# ---------------------------------------------------------------- sampling

def make_missing_splits(splits: dict[str, list[dict]], cfg: DataConfig, where: str) -> dict[str, list[dict]]:
    """Carve valid/test out of train, seeded and stratified, where the source lacks them."""
    missing = [s for s in ("valid", "test") if s not in splits]
    if not missing:
        return splits
    train = splits["train"]
    if cfg.stratify:
        need = 1 + len(missing)
        for lab, c in sorted(Counter(r["label"] for r in train).items()):
            if c < need:
                raise DataError(f"{where}: label '{lab}' has {c} row(s), too few to stratify the "
                                f"{'/'.join(missing)} split(s) (needs {need}); add rows or set data.stratify=false")
    order = prefix_order([r["label"] for r in train], cfg.split_seed + 7919, cfg.stratify)
    out = dict(splits)
    start = 0
    for s in missing:
        frac = cfg.valid_fraction if s == "valid" else cfg.test_fraction
        # stride through the stratified order so each made split is itself stratified
        k = max(1, round(frac * len(train)))
        out[s] = [train[i] for i in order[start:start + k]]
        start += k
    out["train"] = [train[i] for i in order[start:]]
    return out


# ---------------------------------------------------------------- writing

def all_seeds(cfg: Config) -> list[int]:
    """The LLM's seeds first, then any extra seeds the baselines run (they share the subsets)."""
    return subset_seeds(cfg, RANDOM)


READS = {"random": "every train label (to stratify)", "typical": "no label",
         "uncertain": "the labels of the rows it bought, nothing else"}


def select(cfg: Config, train: list[dict]) -> tuple[dict[tuple[str, int], list[int]], dict]:
    """(selection, seed) -> order of train rows (prefixes are the subsets), and what each read."""
    d = cfg.data
    emb = {}

    def embed():
        if "x" not in emb:
            from .embeddings import embed as frozen
            emb["x"] = frozen(cfg, [r["text"] for r in train])
        return emb["x"]
    orders, record = {}, {}
    for sel in d.selection:
        for seed in subset_seeds(cfg, sel):
            oracle = LabelOracle([r["label"] for r in train])
            orders[(sel, seed)] = selection_order(sel, n_rows=len(train), sizes=d.sizes, seed=seed, oracle=oracle,
                                                  stratify=d.stratify, embed=embed)
            top = orders[(sel, seed)][:max(d.sizes)]
            outside = sorted(oracle.read - set(top)) if sel != RANDOM else []
            if outside:  # the oracle stops a leak as it happens; this says so if one ever got past it
                raise DataError(f"data.selection {sel}: read the labels of {len(outside)} row(s) outside its subsets")
            record.setdefault(sel, {"reads": READS.get(sel, "?") if sel != RANDOM or d.stratify else "no label",
                                    "seeds": [], "labels_read": {}})
            record[sel]["seeds"].append(seed)
            record[sel]["labels_read"][str(seed)] = len(oracle.read)
    return orders, record


def build(cfg: Config) -> dict:
    """Run the data step; returns the manifest. Everything is checked before anything is written."""
    d = cfg.data
    splits, origin, labels = load_splits(d)
    splits = make_missing_splits(splits, d, origin["train"])
    known = set(labels)
    for lab in sorted({r["label"] for r in splits["train"]} - known):
        raise DataError(f"{origin['train']}: label '{lab}' is not among the declared label names {labels}")
    train_labels = {r["label"] for r in splits["train"]}
    labels = [lab for lab in labels if lab in train_labels]
    for split in ("valid", "test"):
        for i, r in enumerate(splits[split]):
            if r["label"] not in train_labels:
                raise DataError(f"{origin.get(split, origin['train'])}: row {i + 1}: label '{r['label']}' in the "
                                f"{split} split does not occur in the train split")
    n_train = len(splits["train"])
    for n in d.sizes:
        if n > n_train:
            raise DataError(f"data.sizes: size {n} is larger than the train split ({n_train} rows, "
                            f"{origin['train']})")

    instruction = build_instruction(labels)
    files: dict[str, list[dict]] = {}
    meta: dict[str, dict] = {}
    orders, selection = select(cfg, splits["train"])
    for (sel, seed), order in orders.items():
        for n in sorted(d.sizes):
            name = train_file_name(n, seed, d, sel)
            files[name] = [alpaca_row(instruction, **splits["train"][i]) for i in order[:n]]
            meta[name] = {"kind": "train", "size": n, "seed": seed, "selection": sel}
    for split in ("valid", "test"):
        rows = splits[split]
        if d.eval_size is not None and d.eval_size < len(rows):
            order = prefix_order([r["label"] for r in rows], d.split_seed, d.stratify)
            rows = [rows[i] for i in sorted(order[:d.eval_size])]
        files[eval_file_name(split)] = [alpaca_row(instruction, **r) for r in rows]
        meta[eval_file_name(split)] = {"kind": split, "size": len(rows), "of": len(splits[split])}

    token_stats = measure_tokens(cfg, files)
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
    atomic_write_text(out / TRAIN_ROWS, dumps_json(splits["train"]))
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
        "selection": {sel: {**rec, "orders": {str(s): orders[(sel, s)][:max(d.sizes)] for s in rec["seeds"]}}
                      for sel, rec in selection.items()},
        "files": meta,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def measure_tokens(cfg: Config, files: dict[str, list[dict]]) -> dict[str, dict]:
    """Count every written row's tokens (system + user + answer, the model's chat template) and
    enforce train.cutoff_len on all of them, so no row is cut in silence by LLaMA-Factory (training)
    and seen whole by the server (scoring). With data.max_tokens, documents are cut instead, in the
    rows themselves, so training, scoring and the baselines all read the same cut text."""
    from .prompt import build_input, chat_messages, strip_input
    from .tokens import answer_len, prompt_len, stats, tokenizer, truncate_text
    check_model_path(cfg)
    tok = tokenizer(cfg.model.name_or_path)
    limit = cfg.data.max_tokens or cfg.train.cutoff_len
    cache: dict[tuple, tuple[int, int, str]] = {}  # (input, output) -> (prompt, answer, cut input)

    def measure(r: dict) -> tuple[int, int, str]:
        key = (r["input"], r["output"])
        if key not in cache:
            text, a = r["input"], answer_len(tok, r["output"])
            p = prompt_len(tok, chat_messages({**r, "input": text}))
            while cfg.data.max_tokens and p + a > limit:  # cut the document, then measure again
                text = build_input(truncate_text(tok, strip_input(text), p + a - limit))
                p = prompt_len(tok, chat_messages({**r, "input": text}))
            cache[key] = (p, a, text)
        return cache[key]

    out, too_long = {}, []
    for name, rows in files.items():
        lengths, prompts, cut = [], [], 0
        for i, r in enumerate(rows):
            p, a, text = measure(r)
            if text != r["input"]:
                r["input"], cut = text, cut + 1
            if p + a > limit:
                too_long.append((p + a, name, i))
            lengths.append(p + a)
            prompts.append(p)
        out[name] = {**stats(lengths), "max_prompt": max(prompts), "longest_prompt_row": prompts.index(max(prompts)) + 1,
                     "truncated": cut}
    if too_long:
        n, name, i = max(too_long)
        raise DataError(f"{len(too_long)} row(s) are longer than train.cutoff_len={cfg.train.cutoff_len} tokens "
                        f"(longest: {cfg.data.out_dir}/{name}.json row {i + 1}, {n} tokens with the chat template); "
                        f"raise train.cutoff_len, or set data.max_tokens to cut the documents to fit (the same cut "
                        f"for training, scoring and the baselines)")
    if cfg.data.max_tokens:
        n_cut = sum(1 for k, v in cache.items() if v[2] != k[0])
        print(f"data: {n_cut} document(s) cut to fit data.max_tokens={cfg.data.max_tokens}")
    return out
