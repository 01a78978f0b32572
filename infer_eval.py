"""Score every trained run through a real vLLM server (see fewshot/evaluate_runs.py).

Same as `python -m fewshot eval`; kept under the seed's name. Example:
    python infer_eval.py --config configs/demo.yaml --set eval.mode=multi_lora
"""
import sys

from fewshot.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
