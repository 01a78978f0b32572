"""Score every trained run through a real vLLM server (the eval step, fewshot/eval.py).

Same as `python -m fewshot eval`; kept under the original study's name. Example:
    python infer_eval.py --config configs/demo.yaml --set eval.mode=multi_lora
"""
import sys

from fewshot.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
