"""Run the project's notebooks headless (nbclient), with the cell tagged `parameters` replaced by
the given values, so tests and `python -m fewshot report` execute exactly what a user opens."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(nb_path: str | Path, params: dict, out_path: str | Path | None = None, timeout: int = 900,
            cwd: str | Path | None = None):
    nb = nbformat.read(str(nb_path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
            break
    else:
        raise ValueError(f"{nb_path}: no cell tagged 'parameters'")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or Path(nb_path).resolve().parent)}})
    client.execute()
    if out_path is not None:
        from .fileio import atomic_write_text
        atomic_write_text(out_path, nbformat.writes(nb))
    return nb
