"""Greedy answers of the base model, with or without a LoRA adapter, for rows of an Alpaca file.
Runs in the training env (transformers + peft); used by tests to see that an adapter changes the
model, and handy to eyeball an adapter without a server:
    .venv-train/bin/python -m fewshot.train_env.lf_generate MODEL DATA_FILE N [ADAPTER]"""
from __future__ import annotations

import json
import sys


def generate(model_dir: str, data_file: str, n: int, adapter: str | None = None, max_new_tokens: int = 12) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fewshot.prompt import chat_messages

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    rows = json.load(open(data_file, encoding="utf-8"))[:n]
    out = []
    for row in rows:
        ids = tok.apply_chat_template(chat_messages(row), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(generate(a[0], a[1], int(a[2]), a[3] if len(a) > 3 else None)))
