"""`llamafactory-cli export` of several adapters in one process: LLaMA-Factory's own `export_model`,
called once per spec file, as the CLI calls it once.
Runs in the training env: .venv-train/bin/python -m fewshot.train_env.lf_export SPEC.yaml [SPEC.yaml ...]

Why: for a SmolLM2-135M adapter on one core the CLI's start (its imports) is ~7 of its ~9 s, the
merge and the write ~2 s; the eval step merges a study's adapters back to back. A spec that fails
is reported and the others still run; the exit status is 1 if any failed."""
from __future__ import annotations

import sys
import traceback


def main(paths: list[str]) -> int:
    import yaml
    from llamafactory.train.tuner import export_model

    rc = 0
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                export_model(yaml.safe_load(f))
            print(f"[lf_export] exported {p}", flush=True)
        except Exception:  # one bad adapter must not cost the others their merge
            print(f"[lf_export] FAILED {p}:\n{traceback.format_exc()}", flush=True)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
