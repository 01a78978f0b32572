"""Proof that training and serving render the same prompt: the token ids LLaMA-Factory trains on
(its own dataset pipeline on our data files: dataset_info columns, template, tokenizer) against the
ids the served chat template gives for the messages our client sends.

`compare()` runs in the main env and calls this file in the training env and in the serving env:
    python -m fewshot.parity lf    MODEL TEMPLATE DATASET_DIR DATASET ROW
    python -m fewshot.parity serve MODEL DATA_FILE ROW
each printing the prompt ids as JSON. The env-side halves import only what that env has."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile


def lf_prompt_ids(model: str, template: str, dataset_dir: str, dataset: str, row: int) -> dict:
    """Ids of row `row` as LLaMA-Factory's SFT pipeline builds them; the prompt is what has no label."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_args, data_args, training_args, _, _ = get_train_args({
            "model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
            "template": template, "dataset_dir": dataset_dir, "dataset": dataset, "cutoff_len": 4096,
            "output_dir": tmp, "overwrite_cache": True, "use_cpu": True, "report_to": "none",
        })
        tok_module = load_tokenizer(model_args)
        tpl = get_template_and_fix_tokenizer(tok_module["tokenizer"], data_args)
        ds = get_dataset(tpl, model_args, data_args, training_args, stage="sft", **tok_module)["train_dataset"]
        item = ds[row]
    ids, labels = item["input_ids"], item["labels"]
    first = next(i for i, lab in enumerate(labels) if lab != -100)
    return {"prompt_ids": ids[:first], "answer_ids": ids[first:]}


def served_prompt_ids(model: str, data_file: str, row: int) -> dict:
    """Ids the served chat template gives for the client's messages (as vLLM's chat endpoint does)."""
    from transformers import AutoTokenizer

    from fewshot.prompt import chat_messages

    tok = AutoTokenizer.from_pretrained(model)
    with open(data_file, encoding="utf-8") as f:
        item = json.load(f)[row]
    ids = tok.apply_chat_template(chat_messages(item), add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    answer = tok.encode(item["output"], add_special_tokens=False)
    return {"prompt_ids": list(ids), "answer_ids": answer}


def compare(model: str, template: str, dataset_dir: str, dataset: str, row: int = 0) -> tuple[dict, dict]:
    """(LLaMA-Factory side, served side), each computed in its own env."""
    from pathlib import Path

    from .envs import env_bin, subprocess_env

    def call(kind: str, *args: str) -> dict:
        out = subprocess.run([env_bin(kind, "python"), "-m", "fewshot.parity", *args], capture_output=True,
                             text=True, env=subprocess_env(HF_HUB_OFFLINE="1"), timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"parity ({kind} env) failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    lf = call("train", "lf", model, template, dataset_dir, dataset, str(row))
    served = call("serve", "serve", model, str(Path(dataset_dir) / f"{dataset}.json"), str(row))
    return lf, served


if __name__ == "__main__":
    side, *rest = sys.argv[1:]
    if side == "lf":
        res = lf_prompt_ids(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
    else:
        res = served_prompt_ids(rest[0], rest[1], int(rest[2]))
    print(json.dumps(res))
