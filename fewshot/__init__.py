"""fewshot: learning curves of LoRA-tuned chat LLMs for text classification, with baselines.

Steps (each a module and a `python -m fewshot <step>` command): data, train, eval, baselines,
report, bench. One YAML config drives them all (see config.py)."""
__version__ = "0.1.0"
