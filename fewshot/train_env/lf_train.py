"""`llamafactory-cli train RUN.yaml`, computing the LM head only where the loss needs it.
Runs in the training env: .venv-train/bin/python -m fewshot.train_env.lf_train RUN.yaml

Why: a classification row is ~230 tokens of prompt and a few tokens of answer, and only the answer
is labelled, yet a causal LM computes vocabulary logits at every position. For SmolLM2-135M (a
49k-token vocabulary on a 576-wide model) those logits, their softmax and their gradient are about
a quarter of a CPU training step. Here the trainer asks the model for the logits from the first
labelled position on (transformers' `logits_to_keep`) and passes the labels cut the same way: the
loss, its gradient and the optimizer step are those of the full computation (same positions, same
token count), only the unused logits are not made. `check` compares the two on a real batch.

The cut hands the LM head a slice of the hidden states whose batch stride is the whole sequence's;
torch's matmul cannot fold such a 3-D input into one matrix product and instead copies the
transposed 49k x 576 head weight for a batched product, in every forward: an eighth of a CPU step
(AMX Xeon, docs/benchmarks.md). The head gets a compact copy of its few rows instead
(`compact_head_input`): same numbers, no weight copy.

Under bf16 autocast every frozen fp32 weight of the base model is cast to bf16 again in every
forward (a copy of 107M weights per micro-batch of one row). `frozen_linears_bf16` keeps the frozen
Linear weights as the bf16 values autocast would make of them (the same rounding once): loss and
LoRA gradients bit for bit the same (`check`), a run 5% faster on an AMD EPYC with AVX-512 BF16.
A head tied to the input embedding (SmolLM2's 28M weights) gets its own bf16 copy for the same reason
(a 28M-weight cast per micro-batch, ~1.6% of a step); the embedding itself stays fp32.

With micro-batches of more than one row, each optimizer step's rows (the same rows, drawn by the
same seeded sampler as without this) are sorted by length before they are cut into micro-batches
(`LengthSortedSteps`): rows of similar length share a micro-batch, so little is padded, and the
update is the same sum over the same rows. 2 x 4 sorted ran 6% faster than 1 x 8 (AMD EPYC with
AVX-512 BF16, docs/benchmarks.md).

On a CPU, torch's SDPA kernel is slow on short rows (its mask path) and eager attention (plain
matrix products) slow on long ones (it materializes every score): a 30-layer SmolLM2-shaped model,
micro-batch 2, took 0.90-0.92x the SDPA time with eager up to 704 tokens and 1.28-1.87x from 896 on
(AMD EPYC with AVX-512 BF16; bench/attention_by_length.py). `attention_for` picks per micro-batch:
eager up to EAGER_MAX_TOKENS, SDPA above; both compute exact attention, in another float rounding.
Only where the run's YAML leaves flash_attn unset (LLaMA-Factory then picks SDPA): any flash_attn
set keeps that one.

Everything else is LLaMA-Factory's own launcher and trainer, unchanged."""
from __future__ import annotations

import inspect
import sys

IGNORE = -100
BY_LENGTH = {"on": True}  # off where the run's YAML sets flash_attn (main)
EAGER_MAX_TOKENS = 640  # micro-batch length (padded) up to which a CPU runs eager attention, SDPA above


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
    return "logits_to_keep" in inspect.signature(_base(model).forward).parameters


def _base(model):
    for attr in ("module", "get_base_model"):  # DDP wrapper, then peft
        model = getattr(model, attr, model)
        model = model() if callable(model) and attr == "get_base_model" else model
    return model


def compact_head_input(model) -> bool:
    """Give the model's LM head a compactly strided copy of its input (a few rows); once per model."""
    import torch
    head = _base(model).get_output_embeddings()
    if head is None or getattr(head, "_fewshot_compact", False):
        return False
    head.register_forward_pre_hook(lambda mod, args: (args[0].clone(memory_format=torch.contiguous_format), *args[1:]))
    head._fewshot_compact = True
    return True


def frozen_linears_bf16(model) -> int:
    """Store the base model's frozen Linear weights in bf16, once; for training under bf16 autocast
    only, where F.linear casts them to exactly these values each time. The tied input embedding stays
    fp32 (the embedding lookup is not autocast, so its dtype sets the residual stream's); a head tied to
    it computes with a bf16 copy of it, kept beside it (counted in the return value)."""
    import torch
    base = _base(model)
    if getattr(base, "_fewshot_bf16", False):
        return 0
    emb = base.get_input_embeddings().weight
    n = 0
    for mod in base.modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, torch.nn.Linear) and not w.requires_grad and w.dtype == torch.float32 \
                and w.data_ptr() != emb.data_ptr():
            mod.weight.data = w.data.to(torch.bfloat16)
            n += 1
    head = base.get_output_embeddings()
    if isinstance(head, torch.nn.Linear) and head.weight.data_ptr() == emb.data_ptr() and not emb.requires_grad:
        copy = emb.detach().to(torch.bfloat16)
        head.forward = lambda x, w=copy, b=head.bias: torch.nn.functional.linear(x, w, b)
        n += 1
    base._fewshot_bf16 = True
    return n


def sorted_steps(order: list[int], lengths: list[int], step_rows: int) -> list[int]:
    """The sampler's order with each optimizer step's rows sorted by length (shortest first)."""
    return [i for k in range(0, len(order), step_rows) for i in sorted(order[k:k + step_rows], key=lambda i: lengths[i])]


def length_sorted_sampler(inner, lengths: list[int], step_rows: int, data_seed: int | None, seedable: bool):
    """A sampler yielding `sorted_steps` of the permutation the trainer would have drawn: accelerate
    swaps a plain RandomSampler for its SeedableRandomSampler (seeded by data_seed, reseeded every
    epoch); it cannot see one inside a wrapper, so the wrapper holds that same sampler."""
    import torch
    if seedable and type(inner) is torch.utils.data.RandomSampler:
        from accelerate.data_loader import SeedableRandomSampler
        inner = SeedableRandomSampler(data_source=inner.data_source, replacement=inner.replacement,
                                      num_samples=inner._num_samples, generator=inner.generator, data_seed=data_seed)

    class LengthSortedSteps(torch.utils.data.Sampler):
        def __len__(self):
            return len(inner)

        def __iter__(self):
            return iter(sorted_steps(list(inner), lengths, step_rows))

        def set_epoch(self, epoch: int) -> None:
            if hasattr(inner, "set_epoch"):
                inner.set_epoch(epoch)
    return LengthSortedSteps()


def attention_for(current: str, length: int, device_type: str) -> str:
    """The attention implementation for a micro-batch of `length` tokens a row: eager or SDPA on a
    CPU where the model runs either of them, whatever it runs elsewhere."""
    if device_type != "cpu" or current not in ("sdpa", "eager"):
        return current
    return "eager" if length <= EAGER_MAX_TOKENS else "sdpa"


def patch_trainer() -> None:
    """Trainer.compute_loss with the labels and logits cut to the labelled tail of the batch and, on a
    CPU, the attention picked by the micro-batch's length; each step's rows sorted by length where a
    micro-batch holds more than one row."""
    from transformers import Trainer
    if getattr(Trainer.compute_loss, "_fewshot_tail", False):
        return
    full = Trainer.compute_loss
    random_sampler = Trainer._get_train_sampler

    def _get_train_sampler(self, *args, **kwargs):
        import torch
        inner = random_sampler(self, *args, **kwargs)
        a = self.args
        if a.train_batch_size < 2 or a.world_size > 1 or type(inner) is not torch.utils.data.RandomSampler:
            return inner  # one row per micro-batch, several processes, or LLaMA-Factory's own order
        data = args[0] if args else kwargs.get("train_dataset")
        data = self.train_dataset if data is None else data
        return length_sorted_sampler(inner, [len(ids) for ids in data["input_ids"]],
                                     a.train_batch_size * a.gradient_accumulation_steps, a.data_seed,
                                     a.accelerator_config.use_seedable_sampler)

    def compute_loss(self, model, inputs, *args, **kwargs):
        if getattr(self.accelerator, "mixed_precision", None) == "bf16" and model.device.type == "cpu":
            if n := frozen_linears_bf16(model):
                print(f"[lf_train] {n} frozen Linear weights kept as their bf16 autocast values", flush=True)
        config = _base(model).config
        if getattr(model, "_fewshot_by_length", None) is None:  # decided once: only a model that came up with SDPA
            model._fewshot_by_length = BY_LENGTH["on"] and config._attn_implementation == "sdpa" \
                and model.device.type == "cpu"
            if model._fewshot_by_length:
                print(f"[lf_train] attention by micro-batch length on the CPU: eager up to {EAGER_MAX_TOKENS} "
                      f"tokens, SDPA above", flush=True)
        if model._fewshot_by_length and "input_ids" in inputs:
            config._attn_implementation = attention_for("sdpa", inputs["input_ids"].shape[1], "cpu")
        labels = inputs.get("labels")
        if labels is not None and "logits_to_keep" not in inputs and self.compute_loss_func is None \
                and self.label_smoother is None and _accepts_logits_to_keep(model):
            keep = keep_from_labels(labels)
            if keep:
                inputs = {**inputs, "labels": labels[:, -keep:], "logits_to_keep": keep}
                compact_head_input(model)
        return full(self, model, inputs, *args, **kwargs)

    compute_loss._fewshot_tail = True
    Trainer.compute_loss = compute_loss
    Trainer._get_train_sampler = _get_train_sampler


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
    seen = []
    model.get_base_model().get_output_embeddings().register_forward_hook(
        lambda mod, args, res: seen.append(list(args[0].stride())))
    out = {}
    for name in ("full", "tail"):
        if name == "tail":
            patch_trainer()
        model.zero_grad()
        loss = Trainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=int(labels.ne(IGNORE).sum()))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[name] = (float(loss), grads.clone())
    # under bf16 autocast: the frozen weights stored as autocast's bf16 values give the same bits
    for name in ("autocast", "bf16_stored"):
        if name == "bf16_stored":
            converted = frozen_linears_bf16(model)
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = Trainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=int(labels.ne(IGNORE).sum()))
        loss.backward()
        out[name] = (float(loss), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    # eager and SDPA attention (attention_for switches between them on a CPU): the same loss, to rounding
    config = model.get_base_model().config
    model._fewshot_by_length = False  # each implementation as set here, not by length
    for impl in ("eager", "sdpa"):
        config._attn_implementation = impl
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the weights are bf16 by now
            out[impl] = float(Trainer.compute_loss(trainer, model, dict(batch),
                                                   num_items_in_batch=int(labels.ne(IGNORE).sum())))
    model._fewshot_by_length = None  # as in training: decided on the first micro-batch, from SDPA
    config._attn_implementation = "sdpa"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        by_length = float(Trainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=int(labels.ne(IGNORE).sum())))
    tail = seen[1]  # the tail pass's head input: [batch, keep, width] strides, compact if batch stride = keep x width
    return {"loss_full": out["full"][0], "loss_tail": out["tail"][0], "keep": keep_from_labels(labels),
            "head_input_compact": tail[0] == tail[1] * keep_from_labels(labels),
            "grad_max_abs_diff": float((out["full"][1] - out["tail"][1]).abs().max()),
            "grad_max_abs": float(out["full"][1].abs().max()), "bf16_converted": converted,
            "loss_eager": out["eager"], "loss_sdpa": out["sdpa"], "loss_by_length": by_length,
            "attention_by_length": config._attn_implementation,
            "bf16_stored_same_bits": out["autocast"][0] == out["bf16_stored"][0]
            and bool(torch.equal(out["autocast"][1], out["bf16_stored"][1]))}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        import json
        print(json.dumps(check(argv[1])))
        return
    import yaml
    with open(argv[0]) as f:
        BY_LENGTH["on"] = "flash_attn" not in (yaml.safe_load(f) or {})
    patch_trainer()
    from llamafactory.launcher import launch
    sys.argv = ["llamafactory-cli", "train", *argv]
    launch()


if __name__ == "__main__":
    main(sys.argv[1:])
