"""Model paths in one place: whether a name is a local folder, checking it exists before a
subprocess fails on it, and when a LoRA run's adapter is complete."""
from __future__ import annotations

from pathlib import Path

from .errors import FewshotError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def is_local(name: str) -> bool:
    """A path, not a hub name: starts like one, exists, or lives under models/."""
    p = Path(name).expanduser()
    return name.startswith(("/", ".", "~")) or p.parts[:1] == ("models",) or p.exists()


def check_model_path(cfg) -> None:
    """A local-looking model path that does not exist fails here, naming it, not deep in LLaMA-Factory."""
    p = Path(cfg.model.name_or_path).expanduser()
    if is_local(cfg.model.name_or_path) and not (p / "config.json").exists():
        raise FewshotError(f"model.name_or_path: no model folder at {p} (expected a config.json there; "
                           f"`bash setup.sh` makes models/SmolLM2-135M-Instruct)")


def model_path(cfg) -> str:
    """The model as subprocesses should get it: an absolute folder when local, else the hub name."""
    p = Path(cfg.model.name_or_path).expanduser()
    return str(p.resolve()) if p.exists() else cfg.model.name_or_path


def adapter_finished(run_dir: Path) -> bool:
    """done.json and every adapter file: a run killed while saving is not finished."""
    return (run_dir / "done.json").exists() and all((run_dir / f).exists() for f in ADAPTER_FILES)
