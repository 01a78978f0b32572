"""Where the three virtual environments live. Training (LLaMA-Factory) and serving (vLLM) pin
incompatible transformers versions, so each runs as a subprocess from its own env; the paths
can be moved with FEWSHOT_TRAIN_ENV / FEWSHOT_SERVE_ENV."""
from __future__ import annotations

import os
import shutil
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


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 runs in hardware (1.36x fp32 training measured); without either,
    torch emulates it and a training step takes minutes instead of seconds."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def subprocess_env(**extra: str) -> dict:
    """Environment for env subprocesses: our package importable, no proxy to the loopback server."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env
