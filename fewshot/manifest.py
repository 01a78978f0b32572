"""The data step's record, data/manifest.json (files, hashes, labels, token counts), read by every
later step: its own home, so that no step imports the data step to find its files."""
from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .fileio import read_json

TRAIN_ROWS = "train_rows.json"  # the whole train split in row order (the labelling plan's default pool)
AUDIT = "audit.json"  # the data audit (fewshot/audit.py): duplicates, likely label errors, warnings


def load_manifest(cfg) -> dict:
    p = Path(cfg.data.out_dir) / "manifest.json"
    if not p.exists():
        raise DataError(f"{p} not found: run the data step first (python -m fewshot data --config {cfg.path})")
    return read_json(p)
