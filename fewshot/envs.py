"""Where the three virtual environments live. Training (LLaMA-Factory) and serving (vLLM) pin
incompatible transformers versions, so each runs as a subprocess from its own env; the paths
can be moved with FEWSHOT_TRAIN_ENV / FEWSHOT_SERVE_ENV."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import FewshotError

ROOT = Path(__file__).resolve().parent.parent


def env_dir(kind: str) -> Path:
    var = {"train": "FEWSHOT_TRAIN_ENV", "serve": "FEWSHOT_SERVE_ENV"}[kind]
    return Path(os.environ.get(var, ROOT / f".venv-{kind}"))


def env_bin(kind: str, name: str) -> str:
    p = env_dir(kind) / "bin" / name
    if not p.exists():
        raise FewshotError(f"{p} not found: the {kind} env is missing; run `bash setup.sh` "
                           f"(or point FEWSHOT_{kind.upper()}_ENV at an env that has it)")
    return str(p)


def subprocess_env(**extra: str) -> dict:
    """Environment for env subprocesses: our package importable, no proxy to the loopback server."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env
