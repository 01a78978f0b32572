"""Reading a labelled text set: the shipped one, the hub, or local files (CSV, JSON, JSONL, Parquet) with
`datasets`; every row checked (a clear error naming the file, the row and the column), its labels checked
against the names the source declares."""
from __future__ import annotations

from pathlib import Path

from . import synthetic_data
from .config import DataConfig
from .errors import DataError
from .file_checks import check_csv, check_encoding

LOCAL_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test"}


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


def _load_local(cfg: DataConfig) -> dict:
    import datasets
    out = {}
    for split, f in _local_files(cfg.source).items():
        kind, opts = LOCAL_FORMATS[f.suffix.lower()], {}
        if kind != "parquet":  # text formats: the encoding, and for CSV the separator, checked first
            opts["encoding"] = check_encoding(f, cfg.encoding)
        if kind == "csv":
            check_csv(f, opts["encoding"], cfg.delimiter, [cfg.text_field, cfg.label_field])
            opts["sep"] = cfg.delimiter or ","
        try:
            ds = datasets.load_dataset(kind, data_files=str(f), split="train", **opts)
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(f"{f}: cannot read as {kind} ({', '.join(f'{k} {v!r}' for k, v in opts.items()) or 'defaults'}): "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
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
    raw = _load_local(cfg) if _is_local(cfg.source) else _load_hub(cfg)
    splits, origin, declared = {}, {}, None
    for split, (ds, where) in raw.items():
        splits[split], d = _rows(ds, where, cfg)
        origin[split] = where
        declared = declared or d
    labels = list(declared) if declared else sorted({r["label"] for r in splits["train"]})
    return splits, origin, labels


def check_labels(splits: dict[str, list[dict]], origin: dict[str, str], labels: list[str]) -> list[str]:
    """Every label declared and seen in train; returns the declared labels that train holds."""
    for lab in sorted({r["label"] for r in splits["train"]} - set(labels)):
        raise DataError(f"{origin['train']}: label '{lab}' is not among the declared label names {labels}")
    train_labels = {r["label"] for r in splits["train"]}
    for split in ("valid", "test"):
        for r in splits.get(split, []):
            if r["label"] not in train_labels:
                raise DataError(f"{r['_src']}: label '{r['label']}' in the {split} split does not occur in the "
                                f"train split")
    return [lab for lab in labels if lab in train_labels]
