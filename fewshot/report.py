"""The report step: execute see_result.ipynb headless and export it to report/report.html; the
notebook's cells save the PNG figures beside it."""
from __future__ import annotations

from pathlib import Path

from .config import Config, save_resolved
from .envs import ROOT
from .fileio import atomic_write_text
from .notebooks import execute


def render(cfg: Config) -> int:
    from nbconvert import HTMLExporter

    out = Path(cfg.report.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = save_resolved(cfg, out)  # the notebook loads the config object the step was given
    nb = execute(ROOT / cfg.report.notebook, {"CONFIG": str(resolved.resolve()), "OVERRIDES": [],
                                              "OUT_DIR": str(out.resolve())},
                 out_path=out / "see_result.executed.ipynb", cwd=Path.cwd())
    # the morning report shows answers, not code (the notebook keeps its cells)
    html, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
                           ).from_notebook_node(nb)
    atomic_write_text(out / "report.html", html)
    pngs = sorted(p.name for p in out.glob("*.png"))
    print(f"[report] {out / 'report.html'} and {len(pngs)} figures: {', '.join(pngs) or 'none'}")
    return 0
