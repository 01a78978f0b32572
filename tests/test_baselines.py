"""Baselines on an easy synthetic set: each must beat chance, and write the shared result format."""
import os
import random
import sys

import pytest

from conftest import ROOT, slow, write_rows
from fewshot.baselines import cut_counts, encoder_logits, encoder_path, method_settings, run_all, sorted_within_batches
from fewshot.config import load_config
from fewshot.data import build
from fewshot.errors import FewshotError
from fewshot.results import load_results, results_table

WORDS = {"sport": "goal match team player coach league score stadium", "food": "bread cheese soup fruit oven taste salad spice"}


def _easy(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lab = ["sport", "food"][i % 2]
        rows.append({"text": " ".join(rng.choice(WORDS[lab].split()) for _ in range(8)) + f" item {i}", "label": lab})
    return rows


@pytest.fixture
def easy_cfg(write_config, tmp_path):
    src = write_rows(tmp_path / "easy.jsonl", _easy(200))
    def make(methods, **extra):
        cfg = load_config(write_config({"data.source": str(src), "data.sizes": [16], "data.eval_size": None,
                                        "baselines.methods": methods, "baselines.seeds": [0, 1],
                                        "baselines.encoder_epochs": 4, "baselines.setfit_iterations": 2,
                                        "eval.bootstrap": 20, **extra}))
        build(cfg)
        return cfg
    return make


@pytest.mark.parametrize("method", ["tfidf", pytest.param("encoder", marks=slow), pytest.param("setfit", marks=slow)])
def test_baseline_beats_chance_and_writes_shared_format(easy_cfg, method, capsys):
    cfg = easy_cfg([method])
    assert run_all(cfg) == 0
    res = load_results(cfg.eval.out_dir)
    assert sorted(r["name"] for r in res) == [f"{method}_16_s0", f"{method}_16_s1"]
    for r in res:
        assert r["method"] == method and r["train_rows"] == 16 and r["n_eval"] == 20
        assert r["metrics"]["accuracy"] > 0.75, r["metrics"]["accuracy"]  # chance is 0.5
        assert {"macro_f1", "accuracy_ci95", "confusion_matrix"} <= set(r["metrics"])
        assert "git_commit" in r["manifest"]
        if method == "tfidf":
            assert r["cut"] is None
        else:  # nothing cut, and the tokens read recorded for bench profile
            assert {k: r["cut"][k] for k in ("max_tokens", "train", "eval")} == {"max_tokens": 256, "train": 0, "eval": 0}
            assert 16 * 10 < r["cut"]["train_tokens"] < 16 * 20 and 20 * 10 < r["cut"]["eval_tokens"] < 20 * 20
    assert not (ROOT / "checkpoints").exists()  # nothing written into the working folder
    df = results_table(res)
    assert list(df["seed"]) == [0, 1]
    capsys.readouterr()
    run_all(cfg)  # finished work is skipped
    assert f"{method}_16_s0" not in capsys.readouterr().out


@slow
def test_encoder_micro_batches_give_the_batchs_update(easy_cfg, tmp_path):
    """On a CPU the encoder takes its batch of 8 one row at a time (no padding): with dropout off, the
    accumulated update must equal the padded batch's, step for step, on rows of unequal length."""
    import json
    import shutil

    import numpy as np
    src = encoder_path(easy_cfg(["encoder"]))
    enc = tmp_path / "encoder"
    shutil.copytree(src, enc)
    conf = json.loads((enc / "config.json").read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (enc / "config.json").write_text(json.dumps(conf))
    # fp32 on every CPU: where bf16 is native the encoder would run in it, and its rounding differs
    # between one padded batch and the same rows accumulated (logits apart by ~1e-3)
    cfg = easy_cfg(["encoder"], **{"baselines.encoder": str(enc), "baselines.encoder_batch_size": 8,
                                   "baselines.encoder_epochs": 3, "baselines.encoder_min_steps": 0,
                                   "train.precision": "fp32"})
    rows = _easy(40, seed=3)
    x = [r["text"] + " extra" * (i % 7) * 5 for i, r in enumerate(rows)]  # 10 to 45 tokens: padding matters
    y = [r["label"] for r in rows]
    train_x, train_y, test_x = x[:20], y[:20], x[20:]  # 20 rows: the last batch of each epoch holds 4
    labels1, one, loss1 = encoder_logits(train_x, train_y, test_x, 0, cfg, micro_batch=1)
    labels8, eight, loss8 = encoder_logits(train_x, train_y, test_x, 0, cfg, micro_batch=8)
    _, two, loss2 = encoder_logits(train_x, train_y, test_x, 0, cfg, micro_batch=2)  # the CPU's: sorted pairs
    assert labels1 == labels8
    assert loss1 == pytest.approx(loss8, rel=1e-4)  # the accumulated loss is a mean, not a sum of 8
    assert loss2 == pytest.approx(loss8, rel=1e-4)
    np.testing.assert_allclose(two, eight, atol=1e-4)
    untrained = encoder_logits(train_x, train_y, test_x, 0, load_config(cfg.path, ["baselines.encoder_lr=1e-12"]), 8)[1]
    assert np.abs(eight - untrained).max() > 1e-2  # it did learn, so equal logits mean equal updates
    np.testing.assert_allclose(one, eight, atol=1e-4)
    with pytest.raises(FewshotError, match="micro-batch 3 does not divide baselines.encoder_batch_size 8"):
        encoder_logits(train_x, train_y, test_x, 0, cfg, micro_batch=3)


def test_encoder_cut_is_counted_not_silent(easy_cfg):
    cfg = easy_cfg(["encoder"])
    long = " ".join(["package"] * 300)  # over 256 encoder tokens
    c = cut_counts(cfg, [long, "a short text"], ["short", long, long])
    assert {k: c[k] for k in ("max_tokens", "train", "eval")} == {"max_tokens": 256, "train": 1, "eval": 2}
    # what the encoder reads after the cut: the long texts count 256 tokens each, not 302
    assert 256 < c["train_tokens"] < 256 + 10 and 2 * 256 < c["eval_tokens"] < 2 * 256 + 10


def test_setfit_loss_is_taken_in_fp32_from_a_bf16_body():
    """Pairs 0.9998 apart in cosine, label 1: in bf16 the cosine rounds and the loss is hundreds of
    times too large; the loss SetFit trains with under autocast gives the exact one."""
    import torch
    from sentence_transformers.losses import CosineSimilarityLoss
    from fewshot.baselines import cosine_loss
    torch.manual_seed(0)
    a = torch.randn(64, 384)
    b = (a + 0.02 * torch.randn(64, 384)).bfloat16()
    a = a.bfloat16()
    exact = float(((torch.cosine_similarity(a.double(), b.double()) - 1) ** 2).mean())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = cosine_loss(True, None)(torch.nn.Identity()).compute_loss_from_embeddings([a, b], torch.ones(64))
        plain = CosineSimilarityLoss(torch.nn.Identity()).compute_loss_from_embeddings([a, b], torch.ones(64))
    assert abs(float(ours) - exact) <= 1e-3 * exact
    assert abs(float(plain) - exact) > 10 * exact  # why: what SetFit in plain autocast trained on


def test_setfit_body_without_the_padding_gives_the_padded_loss_and_gradients(easy_cfg):
    """The body reads a batch of pairs a few texts at a time, each chunk cut to its longest text: the
    loss and every gradient are those of the padded batch (fp32, dropout off); left padding, where the
    cut would drop tokens, falls back to the padded forward."""
    import torch
    from sentence_transformers import SentenceTransformer
    from fewshot.baselines import cosine_loss, embed_unpadded
    from fewshot.models import encoder_path
    torch.manual_seed(0)
    body = SentenceTransformer(encoder_path(easy_cfg(["setfit"])), device="cpu").eval()
    a = ["goal", "a long text about football teams and the goals they score " * 3, "soup", "bread and soup " * 5]
    b = ["team " * 12, "bread", "the league table", "kitchen"]
    cols = [body.tokenize(a), body.tokenize(b)]
    assert cols[0]["input_ids"].shape[1] > 30  # the batch is padded to its longest text
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])

    def loss_and_grads(chunk):
        body.zero_grad()
        loss = cosine_loss(False, chunk)(body)([dict(c) for c in cols], labels)
        loss.backward()
        return float(loss), [p.grad.clone() for p in body.parameters() if p.grad is not None]
    padded, g_padded = loss_and_grads(None)
    for chunk in (2, 3, 5):  # 5: a chunk holds the second column's longest text and the first's longest
        cut, g_cut = loss_and_grads(chunk)
        assert abs(cut - padded) < 1e-5 * max(1.0, padded) and len(g_cut) == len(g_padded) > 50
        assert max(float((x - y).abs().max()) for x, y in zip(g_cut, g_padded)) < 1e-4
    left = [dict(c) for c in cols]
    left[1]["attention_mask"] = left[1]["attention_mask"].flip(1)
    assert embed_unpadded(body, left, 3) is None


def test_bad_encoder_path_is_named(easy_cfg, tmp_path):
    cfg = easy_cfg(["encoder"], **{"baselines.encoder": str(tmp_path / "no-encoder")})
    with pytest.raises(FewshotError, match="baselines.encoder: no model folder at .*no-encoder"):
        run_all(cfg)


def test_a_method_reruns_only_when_its_own_settings_change(easy_cfg, capsys):
    cfg = easy_cfg(["tfidf"])
    assert run_all(cfg) == 0
    capsys.readouterr()
    other = load_config(cfg.path, ["baselines.encoder_epochs=7", "baselines.setfit_iterations=3"])
    assert run_all(other) == 0
    assert "tfidf_16_s0" not in capsys.readouterr().out  # encoder settings do not touch TF-IDF
    from fewshot.baselines import method_settings
    assert method_settings(other, "encoder")["epochs"] == 7.0
    assert method_settings(other, "setfit")["iters"] == 3
    import fewshot.baselines as B
    for native in (True, False):  # SetFit's body in bf16 or not: another result, so another skip key
        B.encoder_bf16, was = (lambda c: native), B.encoder_bf16
        try:
            keys = method_settings(other, "setfit")
        finally:
            B.encoder_bf16 = was
        assert keys.get("bf16_body_fp32_loss", False) is native
    heads = {h: method_settings(load_config(cfg.path, [f"baselines.setfit_head={h}"]), "setfit")["head"]
             for h in ("setfit", "balanced_C10")}
    assert heads["setfit"] != heads["balanced_C10"]  # another head reruns SetFit


@slow
def test_setfit_head_sweep_fits_every_head_on_one_body_on_valid(easy_cfg, tmp_path):
    """The head choice is made on the valid split; the chosen head is the one SetFit trains with."""
    from fewshot.config import SETFIT_HEADS
    from fewshot.fileio import read_json
    from fewshot.sweep import setfit_heads
    cfg = easy_cfg(["setfit"], **{"sweep.out_dir": str(tmp_path / "sweep"), "sweep.sizes": [16]})
    assert setfit_heads(cfg) == 0
    out = read_json(tmp_path / "sweep" / "setfit_heads.json")
    assert sorted(r["head"] for r in out["rows"]) == sorted(SETFIT_HEADS) and out["split"] == "valid"
    assert len({r["body_s"] for r in out["rows"]}) == 1  # one body per size, every head on its embeddings
    assert all(r["accuracy"] > 0.75 for r in out["rows"]) and out["best"] in SETFIT_HEADS
    from fewshot.baselines import setfit_model
    model = setfit_model(["goal team"] * 4 + ["bread soup"] * 4, ["sport"] * 4 + ["food"] * 4, 0, cfg,
                         SETFIT_HEADS["balanced_C10"])
    assert (model.model_head.C, model.model_head.class_weight) == (10.0, "balanced")


@slow
def test_encoder_recipe_sweep_scores_each_recipe_on_valid_with_its_step_floor(easy_cfg, tmp_path):
    """The encoder is tuned like the LoRA recipe and SetFit's head: each recipe of
    sweep.encoder_recipes trained and scored on valid; a step floor raises a 16-row subset's epochs."""
    from fewshot.fileio import read_json
    from fewshot.sweep import encoder_recipes
    recipes = {"plain": {"baselines.encoder_epochs": 1, "baselines.encoder_min_steps": 0},
               "floor": {"baselines.encoder_epochs": 1, "baselines.encoder_min_steps": 12,
                         "baselines.encoder_batch_size": 8, "baselines.encoder_lr": 1e-4}}
    cfg = easy_cfg(["encoder"], **{"sweep.out_dir": str(tmp_path / "sweep"), "sweep.sizes": [16],
                                  "sweep.encoder_recipes": recipes})
    assert encoder_recipes(cfg) == 0
    out = read_json(tmp_path / "sweep" / "encoder_recipes.json")
    rows = {r["recipe"]: r for r in out["rows"]}
    assert out["split"] == "valid" and set(rows) == {"plain", "floor"}
    assert rows["plain"]["epochs"] == 1 and rows["floor"]["epochs"] == 6   # 2 steps an epoch: 6 epochs = 12 steps
    assert rows["floor"]["accuracy"] > 0.75 and out["best"] in recipes


def test_sorted_within_batches_keeps_every_update_s_rows():
    order = [5, 0, 9, 3, 7, 1, 8, 2, 6, 4, 10]  # a shuffled epoch of 11 rows, batches of 4: 4 + 4 + 3
    lengths = [30, 5, 12, 40, 7, 22, 9, 50, 3, 18, 11]
    got = sorted_within_batches(order, lengths, 4)
    for k in range(0, 11, 4):
        assert sorted(got[k:k + 4]) == sorted(order[k:k + 4])  # the same rows in each optimizer step
        assert [lengths[i] for i in got[k:k + 4]] == sorted(lengths[i] for i in order[k:k + 4])
    assert got == [9, 5, 0, 3, 8, 1, 2, 7, 4, 6, 10]


@slow
def test_encoder_runs_side_by_side_each_on_its_own_core(easy_cfg):
    """Two encoder runs at once on a 2-core CPU, each pinned to one core with one thread; their
    results as good as one at a time."""
    from fewshot.devices import usable_cpus
    if len(usable_cpus()) < 2:
        pytest.skip("needs 2 cores")
    cfg = easy_cfg(["encoder"], **{"baselines.cpu_parallel": 2})
    before = os.environ.get("GLIBC_TUNABLES")
    assert run_all(cfg) == 0
    res = {r["seed"]: r for r in load_results(cfg.eval.out_dir)}
    assert sorted(res) == [0, 1]
    assert [len(r["cores"]) for r in res.values()] == [1, 1] and res[0]["cores"] != res[1]["cores"]
    assert [r["threads"] for r in res.values()] == [1, 1]
    # each worker process started with glibc keeping freed blocks (or the user's own setting)
    from fewshot.devices import cpu_malloc_env
    want = cpu_malloc_env().get("GLIBC_TUNABLES", os.environ.get("GLIBC_TUNABLES"))
    assert want and [r["glibc_tunables"] for r in res.values()] == [want, want]
    assert os.environ.get("GLIBC_TUNABLES") == before  # set for the workers' start only
    assert all(r["metrics"]["accuracy"] > 0.75 for r in res.values())


def test_tfidf_runs_join_the_lanes_last_not_before_them(easy_cfg, capsys):
    """TF-IDF's runs go to the worker lanes after the heavy runs (they fill the lane that frees first)
    instead of running here while a core waits for the pool."""
    from fewshot.devices import usable_cpus
    if len(usable_cpus()) < 2:
        pytest.skip("needs 2 cores")
    cfg = easy_cfg(["tfidf", "encoder"], **{"baselines.cpu_parallel": 2})
    assert run_all(cfg) == 0
    out = capsys.readouterr().out.splitlines()
    pool = next(i for i, line in enumerate(out) if "at a time on the CPU" in line)
    assert "4 run(s)" in out[pool]  # 2 seeds of each method, all in the pool
    done = [line.split()[1] for line in out[pool + 1:] if "accuracy" in line]
    assert sorted(done) == ["encoder_16_s0", "encoder_16_s1", "tfidf_16_s0", "tfidf_16_s1"]
    assert not any("accuracy" in line for line in out[:pool])  # none ran before the pool


def test_baseline_workers_get_glibc_keeping_freed_blocks_only_while_they_start(monkeypatch):
    """devices.cpu_malloc_env: the setting on a CPU machine, the user's own GLIBC_TUNABLES kept, none
    with a GPU; procs.environ sets it for the pool's start and puts os.environ back afterwards."""
    from fewshot import devices, procs
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    env = devices.cpu_malloc_env()
    assert env == ({"GLIBC_TUNABLES": devices.CPU_MALLOC} if sys.platform.startswith("linux") else {})
    with procs.environ(env):
        assert os.environ.get("GLIBC_TUNABLES") == env.get("GLIBC_TUNABLES")
    assert "GLIBC_TUNABLES" not in os.environ
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert devices.cpu_malloc_env() == {}
    with procs.environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"}):
        assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=1"
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setattr(devices, "has_gpu", lambda: True)
    assert devices.cpu_malloc_env() == {}


@slow
def test_setfit_in_bf16_trains_on_the_updated_weights_not_the_first_copies(easy_cfg, monkeypatch):
    """One autocast context around SetFit's training: torch keeps each weight's bf16 copy until the
    context ends, so without baselines.fresh_casts every step's forward saw the weights before the
    first update. With it, the trained body is the one trained with autocast's cache off (a fresh copy
    at every use) up to rounding (a copy's gradient summed in bf16 over its uses: 5e-5 here); without it,
    the body is off by ~80 times more."""
    import contextlib

    import torch
    from transformers import TrainerCallback

    import fewshot.baselines as B
    cfg = easy_cfg(["setfit"])
    monkeypatch.setattr(B, "encoder_bf16", lambda c: True)  # bf16 on any CPU (emulated where not native)
    rows = _easy(24, seed=3)
    x, y = [r["text"] for r in rows], [r["label"] for r in rows]

    def body_output(**patch):
        with monkeypatch.context() as m:
            for k, v in patch.items():
                m.setattr(B, k, v)
            model = B.setfit_model(x, y, 0, cfg, {})
        with torch.no_grad():
            return model.model_body.encode(x[:4], convert_to_tensor=True).float()

    uncached = lambda bf16: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False)
    truth = body_output(_autocast=uncached, fresh_casts=lambda: TrainerCallback())
    fresh = body_output()
    stale = body_output(fresh_casts=lambda: TrainerCallback())
    off = lambda a: float((a - truth).abs().max())
    assert off(fresh) < 1e-3 * float(truth.abs().max()) and off(stale) > 10 * off(fresh)


def test_encoder_trains_with_eager_attention_and_scores_with_sdpa_on_a_cpu(easy_cfg, monkeypatch):
    """With dropout on, torch's CPU SDPA takes its slow math path, so the encoder trains with eager
    attention there; scoring (no dropout) goes back to SDPA's flash kernel."""
    import transformers
    cfg = easy_cfg(["encoder"], **{"baselines.encoder_min_steps": 0})
    seen = []
    load = transformers.AutoModelForSequenceClassification.from_pretrained

    def recorded(*a, **k):
        model = load(*a, **k)
        model.register_forward_pre_hook(lambda m, args: seen.append((m.training, m.config._attn_implementation)))
        return model
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", recorded)
    rows = _easy(20, seed=5)
    encoder_logits([r["text"] for r in rows[:16]], [r["label"] for r in rows[:16]], [r["text"] for r in rows[16:]], 0, cfg, 2)
    assert {a for training, a in seen if training} == {"eager"}
    assert {a for training, a in seen if not training} == {"sdpa"}


def test_encoder_trains_with_numpy_dropout_masks_on_a_cpu_and_scores_without(easy_cfg, monkeypatch):
    """torch's CPU bernoulli_ draws masks one element at a time off Intel's MKL path: the encoder's
    training draws them from numpy (fewshot.dropout_masks); scoring has no dropout; torch's is back after."""
    import torch
    import transformers
    cfg = easy_cfg(["encoder"], **{"baselines.encoder_min_steps": 0})
    before, seen = torch.nn.functional.dropout, []
    load = transformers.AutoModelForSequenceClassification.from_pretrained

    def recorded(*a, **k):
        model = load(*a, **k)
        model.register_forward_pre_hook(lambda m, args: seen.append((m.training, torch.nn.functional.dropout.__module__)))
        return model
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", recorded)
    rows = _easy(20, seed=5)
    encoder_logits([r["text"] for r in rows[:16]], [r["label"] for r in rows[:16]], [r["text"] for r in rows[16:]], 0, cfg, 2)
    assert {mod for training, mod in seen if training} == {"fewshot.dropout_masks"}
    assert torch.nn.functional.dropout is before
    assert "dropout_masks" in method_settings(cfg, "encoder") and "dropout_masks" not in method_settings(cfg, "setfit")
