"""Shared fixtures: a repo-root working dir, a tiny config writer, and env/model availability."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"


def have_env(kind: str) -> bool:
    return (ROOT / f".venv-{kind}" / "bin" / "python").exists()


needs_train_env = pytest.mark.skipif(not (have_env("train") and MODEL.exists()),
                                     reason="training env or model missing: run bash setup.sh")
needs_serve_env = pytest.mark.skipif(not (have_env("serve") and MODEL.exists()),
                                     reason="serving env or model missing: run bash setup.sh")
slow = pytest.mark.slow  # starts LLaMA-Factory or vLLM, or fine-tunes an encoder: out of the quick loop


@pytest.fixture
def write_config(tmp_path):
    """Write a config YAML into tmp_path (data/saves/objs/logs under tmp_path too) and return its path."""
    def _write(extra: dict | None = None, name: str = "cfg.yaml") -> Path:
        cfg = {
            "name": "t",
            "data": {"source": "synthetic", "synthetic_rows": 600, "sizes": [10, 30], "seeds": [0],
                     "eval_size": 40, "out_dir": str(tmp_path / "data"), "audit": "quick"},  # full: test_audit
            "model": {"name_or_path": str(MODEL)},
            "train": {"out_dir": str(tmp_path / "saves"), "log_dir": str(tmp_path / "logs")},
            "eval": {"out_dir": str(tmp_path / "objs")},
            "report": {"out_dir": str(tmp_path / "report")},
            "baselines": {"seeds": [0]},
        }
        for key, value in (extra or {}).items():
            node = cfg
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        p = tmp_path / name
        p.write_text(yaml.safe_dump(cfg))
        return p
    return _write


def text_rows(n: int, labels=("pos", "neg", "neu"), seed: int = 0, letters: str = "abcdefgh", words: int = 8) -> list[dict]:
    """n distinct rows ("doc i" + random letters) cycling through the labels: a user's own small file."""
    import random
    rng = random.Random(seed)
    return [{"text": f"doc {i} " + " ".join(rng.choice(letters) for _ in range(words)), "label": labels[i % len(labels)]}
            for i in range(n)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as CSV, JSON or JSONL according to the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        import pandas as pd
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        raise ValueError(path)
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(ROOT)
    yield
