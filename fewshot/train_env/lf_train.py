"""`llamafactory-cli train RUN.yaml`, computing the LM head only where the loss needs it.
Runs in the training env: .venv-train/bin/python -m fewshot.train_env.lf_train RUN.yaml

Why: a classification row is ~230 tokens of prompt and a few tokens of answer, and only the answer
is labelled, yet a causal LM computes vocabulary logits at every position. For SmolLM2-135M (a
49k-token vocabulary on a 576-wide model) those logits, their softmax and their gradient are about
a quarter of a CPU training step. Here the trainer asks the model for the logits from the first
labelled position on (transformers' `logits_to_keep`) and passes the labels cut the same way: the
loss, its gradient and the optimizer step are those of the full computation (same positions, same
token count), only the unused logits are not made. `check` compares the two on a real batch.

Everything else is LLaMA-Factory's own launcher and trainer, unchanged."""
from __future__ import annotations

import inspect
import sys

IGNORE = -100


def keep_from_labels(labels) -> int:
    """Positions to keep at the end of the sequence so that every labelled token still has the
    logit that predicts it (the one just before it); 0 = keep all."""
    mask = labels.ne(IGNORE)
    rows = mask.any(dim=1)
    if not bool(rows.any()):
        return 0
    first = int(mask.int().argmax(dim=1)[rows].min())  # earliest labelled position in the batch
    keep = labels.shape[1] - first + 1
    return keep if 0 < keep < labels.shape[1] else 0


def _accepts_logits_to_keep(model) -> bool:
    base = model
    for attr in ("module", "get_base_model"):  # DDP wrapper, then peft
        base = getattr(base, attr, base)
        base = base() if callable(base) and attr == "get_base_model" else base
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def patch_trainer() -> None:
    """Trainer.compute_loss with the labels and logits cut to the labelled tail of the batch."""
    from transformers import Trainer
    if getattr(Trainer.compute_loss, "_fewshot_tail", False):
        return
    full = Trainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        labels = inputs.get("labels")
        if labels is not None and "logits_to_keep" not in inputs and self.compute_loss_func is None \
                and self.label_smoother is None and _accepts_logits_to_keep(model):
            keep = keep_from_labels(labels)
            if keep:
                inputs = {**inputs, "labels": labels[:, -keep:], "logits_to_keep": keep}
        return full(self, model, inputs, *args, **kwargs)

    compute_loss._fewshot_tail = True
    Trainer.compute_loss = compute_loss


def check(model_dir: str) -> dict:
    """Loss and LoRA gradients of one padded two-row batch, full logits vs the labelled tail."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids = torch.randint(10, 1000, (2, 40))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 30:36], labels[1, 33:40] = ids[0, 30:36], ids[1, 33:40]  # answers; row 0 right-padded after 36
    mask = torch.ones_like(ids)
    mask[0, 36:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    trainer = Trainer(model=model, args=TrainingArguments(output_dir="/tmp/fewshot_lf_train_check", report_to=[],
                                                          use_cpu=True))
    out = {}
    for name in ("full", "tail"):
        if name == "tail":
            patch_trainer()
        model.zero_grad()
        loss = Trainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=int(labels.ne(IGNORE).sum()))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[name] = (float(loss), grads.clone())
    return {"loss_full": out["full"][0], "loss_tail": out["tail"][0], "keep": keep_from_labels(labels),
            "grad_max_abs_diff": float((out["full"][1] - out["tail"][1]).abs().max()),
            "grad_max_abs": float(out["full"][1].abs().max())}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        import json
        print(json.dumps(check(argv[1])))
        return
    patch_trainer()
    from llamafactory.launcher import launch
    sys.argv = ["llamafactory-cli", "train", *argv]
    launch()


if __name__ == "__main__":
    main(sys.argv[1:])
