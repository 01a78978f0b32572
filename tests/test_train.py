"""The train step with the real LLaMA-Factory in the training env, on tiny runs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, MODEL, needs_train_env, slow
from fewshot.config import load_config
from fewshot.data import build
from fewshot.errors import FewshotError
from fewshot.train import lf_args, run_all, run_dir

# only the tests that start LLaMA-Factory need its env; the pure unit tests run everywhere
lf = [needs_train_env, slow]

TINY = {"data.sizes": [4], "data.max_tokens": 160, "train.num_train_epochs": 2, "train.per_device_train_batch_size": 2,
        "train.gradient_accumulation_steps": 1, "train.learning_rate": 0.01, "train.cutoff_len": 160,
        "train.logging_steps": 1, "train.save_steps": 1, "train.device": "cpu", "train.precision": "fp32",
        "train.gradient_checkpointing": False}


def _cfg(write_config, **extra):
    cfg = load_config(write_config({**TINY, **extra}))
    build(cfg)
    return cfg


def _generate(cfg, adapter=None):
    data = Path(cfg.data.out_dir) / "llm_valid.json"
    cmd = [str(ROOT / ".venv-train/bin/python"), "-m", "fewshot.train_env.lf_generate", str(MODEL), str(data), "3"]
    out = subprocess.run(cmd + ([str(adapter)] if adapter else []), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@lf[0]
@lf[1]
def test_tiny_run_trains_an_adapter_that_changes_greedy_output_and_rerun_skips(write_config, capsys):
    cfg = _cfg(write_config)
    assert run_all(cfg) == 0
    out = run_dir(cfg, "llm_train_4")
    for f in ("adapter_model.safetensors", "adapter_config.json", "done.json", "train.yaml", "trainer_log.jsonl"):
        assert (out / f).exists(), f
    assert yaml.safe_load((out / "train.yaml").read_text())["dataset"] == "llm_train_4"
    summary = [json.loads(x) for x in (Path(cfg.train.log_dir) / "train_summary.jsonl").read_text().splitlines()]
    assert summary[-1]["run"] == "llm_train_4" and summary[-1]["rows"] == 4 and summary[-1]["samples_per_s"]
    assert _generate(cfg) != _generate(cfg, out)

    capsys.readouterr()
    assert run_all(cfg) == 0
    assert "nothing to do" in capsys.readouterr().out
    # a changed hyper-parameter retrains; a logging-only change does not
    cfg2 = load_config(cfg.path, ["train.logging_steps=3"])
    assert run_all(cfg2) == 0 and "nothing to do" in capsys.readouterr().out


@lf[0]
@lf[1]
def test_killed_run_resumes_from_its_checkpoint(write_config, tmp_path):
    cfg = _cfg(write_config, **{"data.sizes": [12], "train.num_train_epochs": 1})  # 6 steps, a checkpoint each
    cmd = [sys.executable, "-m", "fewshot", "train", "--config", cfg.path]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = run_dir(cfg, "llm_train_12")
    deadline = time.time() + 400
    while not list(out.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert not (out / "done.json").exists()
    # the trainer's process group is gone with it
    assert subprocess.run(["pgrep", "-f", str(out / "train.yaml")], capture_output=True).returncode == 1
    assert run_all(cfg) == 0
    log = (Path(cfg.train.log_dir) / "llm_train_12.train.log").read_text()
    assert "resume_from_checkpoint" in (out / "train.yaml").read_text()
    assert "Resuming training from checkpoint" in log.split("\n$ ")[-1]  # the second launch resumed
    assert (out / "done.json").exists()


def test_wrong_model_path_is_named(write_config, tmp_path):
    # the data step already needs the model (its tokenizer counts the rows' tokens)
    with pytest.raises(FewshotError, match="model.name_or_path: no model folder at .*no-such-model"):
        _cfg(write_config, **{"model.name_or_path": str(tmp_path / "no-such-model")})


@lf[0]
@lf[1]
def test_failing_run_is_reported_and_others_go_on(write_config, capsys):
    # a LLaMA-Factory error (unknown template) in every run: each is reported with its log tail
    cfg = _cfg(write_config, **{"data.sizes": [2, 4], "model.template": "no_such_template"})
    assert run_all(cfg) == 1
    text = capsys.readouterr().out
    assert "FAILED llm_train_2" in text and "FAILED llm_train_4" in text and "no_such_template" in text


def test_lf_args_follow_the_config(write_config):
    cfg = load_config(write_config({"train.extra": {"flash_attn": "auto"}, "train.precision": "bf16",
                                     "train.device": "cuda"}))
    a = lf_args(cfg, "llm_train_10", "sha")
    assert a["bf16"] is True and "use_cpu" not in a and a["flash_attn"] == "auto"
    assert a["stage"] == "sft" and a["finetuning_type"] == "lora" and a["dataset"] == "llm_train_10"


def test_fast_mode_keeps_the_effective_batch_and_drops_accumulation(write_config):
    cfg = load_config(write_config({"train.per_device_train_batch_size": 2, "train.gradient_accumulation_steps": 4,
                                     "train.gradient_checkpointing": True, "train.fast": True}))
    a = lf_args(cfg, "llm_train_10", "sha")
    assert a["per_device_train_batch_size"] * a["gradient_accumulation_steps"] == 8
    assert a["gradient_accumulation_steps"] == 1 and a["disable_gradient_checkpointing"] is True
    assert a["train_sampling_strategy"] == "group_by_length"
    seed = lf_args(load_config(cfg.path, ["train.fast=false"]), "llm_train_10", "sha")
    assert (seed["per_device_train_batch_size"], seed["gradient_accumulation_steps"]) == (2, 4)
    assert "disable_gradient_checkpointing" not in seed and "train_sampling_strategy" not in seed


@pytest.mark.parametrize("device,native_bf16,expected", [
    ("cpu", False, "fp32"),   # AVX2 only: bf16 would be emulated, minutes per step
    ("cpu", True, "bf16"),    # avx512_bf16 / amx_bf16: native
    ("cuda", False, "bf16"), ("cuda", True, "bf16")])
def test_auto_precision_follows_the_hardware(write_config, monkeypatch, device, native_bf16, expected):
    import fewshot.devices as D
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.delenv("FEWSHOT_CPU_DTYPE", raising=False)
    cfg = load_config(write_config({"train.device": device, "train.precision": "auto"}))
    assert D.device_and_precision(cfg) == (device, expected)
    a = lf_args(cfg, "llm_train_10", "sha")
    assert a.get("bf16", False) is (expected == "bf16") and "fp16" not in a
    if device == "cpu":  # the CPU server and the encoder baseline run the same precision
        assert D.cpu_serving_dtype(cfg) == ("bfloat16" if native_bf16 else "float32")
        assert D.encoder_bf16(cfg) is native_bf16
    pinned = load_config(cfg.path, ["train.precision=fp32"])
    assert D.device_and_precision(pinned)[1] == "fp32" and D.cpu_serving_dtype(pinned) == "float32"
    assert D.encoder_bf16(pinned) is False  # fp32 asked for: every trained model in fp32


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch):
    import fewshot.devices as D
    monkeypatch.setattr(D, "cpu_flags", lambda: {"avx2", "fma"})
    assert D.cpu_has_native_bf16() is False
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(D, "cpu_flags", lambda f=flag: {"avx2", f})
        assert D.cpu_has_native_bf16() is True


@lf[0]
@lf[1]
def test_two_concurrent_train_steps_train_each_run_exactly_once(write_config):
    cfg = _cfg(write_config, **{"data.sizes": [2, 4]})
    cmd = [sys.executable, "-m", "fewshot", "train", "--config", cfg.path]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [json.loads(x)["run"] for x in (Path(cfg.train.log_dir) / "train_summary.jsonl").read_text().splitlines()]
    assert sorted(trained) == ["llm_train_2", "llm_train_4"]  # each run trained once, by one of the two
    said = "".join(outs)
    assert "another process trains it" in said or "already trained" in said


@lf[0]
@lf[1]
def test_a_lock_left_by_a_killed_process_does_not_block_a_rerun(write_config):
    from fewshot.runs import train_lock
    cfg = _cfg(write_config, **{"data.sizes": [2]})
    lock = train_lock(cfg, "llm_train_2")
    code = "import sys, time; from fewshot.locks import hold\nwith hold(sys.argv[1]):\n print('held', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert run_all(cfg) == 0 and (run_dir(cfg, "llm_train_2") / "done.json").exists()


def test_labelled_logits_keep_every_labelled_token_and_its_predicting_logit():
    import torch
    from fewshot.train_env.lf_train import IGNORE, keep_from_labels
    labels = torch.full((2, 10), IGNORE)
    labels[0, 6:8] = 5          # row 0: answer at 6-7, then right padding
    labels[1, 8:10] = 7         # row 1: answer at the end
    keep = keep_from_labels(labels)
    assert keep == 5            # from position 5 (predicts 6) to the end
    assert (labels[:, :-keep] == IGNORE).all() and labels[:, -keep][0] == IGNORE
    assert keep_from_labels(torch.full((1, 6), IGNORE)) == 0       # nothing labelled: keep all
    first = torch.full((1, 6), IGNORE)
    first[0, 0] = 3                                                # labelled at 0: nothing to cut
    assert keep_from_labels(first) == 0


@lf[0]
@lf[1]
def test_labelled_logits_give_the_full_loss_and_gradients():
    """The trainer patch on the real model, in the training env: one padded batch, LoRA gradients;
    and the frozen weights in bf16 under autocast."""
    cmd = [str(ROOT / ".venv-train/bin/python"), "-m", "fewshot.train_env.lf_train", "--check", str(MODEL)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0 < r["keep"] < 40
    assert r["head_input_compact"]  # the head's matmul folds: no copy of its weight per forward
    assert abs(r["loss_full"] - r["loss_tail"]) <= 1e-5 * abs(r["loss_full"])
    assert r["grad_max_abs"] > 0 and r["grad_max_abs_diff"] <= 1e-5 * r["grad_max_abs"]
    # under bf16 autocast the frozen weights stored in bf16 once (the 7 Linear of 30 layers, and a copy
    # for the head tied to the embedding): the same loss and gradients, bit for bit
    assert r["bf16_converted"] == 30 * 7 + 1 and r["bf16_stored_same_bits"]
    # the two attention implementations a CPU run switches between compute the same loss (bf16 here)
    assert abs(r["loss_eager"] - r["loss_sdpa"]) <= 0.02 * abs(r["loss_sdpa"])
    # and the patched trainer took eager for this 40-token batch of a model that came up with SDPA
    assert r["attention_by_length"] == "eager" and r["loss_by_length"] == r["loss_eager"]


def test_a_cpu_micro_batch_takes_eager_attention_when_short_and_sdpa_when_long():
    from fewshot.train_env.lf_train import EAGER_MAX_TOKENS, attention_for
    assert attention_for("sdpa", 200, "cpu") == "eager" == attention_for("eager", EAGER_MAX_TOKENS, "cpu")
    assert attention_for("sdpa", EAGER_MAX_TOKENS + 1, "cpu") == "sdpa" == attention_for("eager", 1800, "cpu")
    assert attention_for("sdpa", 200, "cuda") == "sdpa"                  # a GPU keeps what it has
    assert attention_for("flash_attention_2", 200, "cpu") == "flash_attention_2"


def test_sorted_steps_keep_each_steps_rows_from_the_seeded_order():
    """Micro-batches of similar length without changing which rows make each optimizer step: the
    wrapper must hold accelerate's seeded sampler (a plain RandomSampler would draw other steps)."""
    import torch
    from accelerate.data_loader import SeedableRandomSampler
    from fewshot.train_env.lf_train import length_sorted_sampler
    data, step = list(range(20)), 8
    lengths = [(i * 37) % 23 + 1 for i in data]
    plain = SeedableRandomSampler(data_source=data, data_seed=42)
    ours = length_sorted_sampler(torch.utils.data.RandomSampler(data), lengths, step, 42, True)
    assert len(ours) == len(plain) == 20
    orders = []
    for epoch in range(2):
        plain.set_epoch(epoch)
        ours.set_epoch(epoch)
        a, b = list(plain), list(ours)
        for k in range(0, len(data), step):
            assert sorted(a[k:k + step]) == sorted(b[k:k + step])                       # the same rows per step
            assert [lengths[i] for i in b[k:k + step]] == sorted(lengths[i] for i in a[k:k + step])
        assert a != b
        orders.append(b)
    assert orders[0] != orders[1]  # reshuffled every epoch, as without the sort


def test_sorted_steps_are_part_of_the_run_hash(write_config):
    from fewshot.train import run_hash
    cfg = load_config(write_config({"train.per_device_train_batch_size": 2, "train.gradient_accumulation_steps": 4}))
    one = load_config(cfg.path, ["train.per_device_train_batch_size=1", "train.gradient_accumulation_steps=8"])
    assert lf_args(cfg, "llm_train_10", "sha")["_fewshot_sorted_steps"]
    assert "_fewshot_sorted_steps" not in lf_args(one, "llm_train_10", "sha")  # one row a micro-batch: nothing to sort
    assert "_fewshot_sorted_steps" not in lf_args(load_config(cfg.path, ["train.fast=true"]), "llm_train_10", "sha")


def test_attention_by_length_is_part_of_a_cpu_runs_hash_unless_flash_attn_is_set(write_config):
    from fewshot.train import run_hash
    cfg = load_config(write_config({"train.device": "cpu"}))
    fixed = load_config(cfg.path, ["train.extra={flash_attn: sdpa}"])
    assert lf_args(cfg, "llm_train_10", "sha")["_fewshot_cpu_attention_by_length"] > 0
    assert "_fewshot_cpu_attention_by_length" not in lf_args(fixed, "llm_train_10", "sha")
    assert run_hash(lf_args(cfg, "llm_train_10", "sha")) != run_hash(lf_args(fixed, "llm_train_10", "sha"))


def test_turning_labelled_logits_off_retrains_the_run(write_config):
    cfg = load_config(write_config())
    on, off = lf_args(cfg, "llm_train_10", "sha"), lf_args(load_config(cfg.path, ["train.labelled_logits_only=false"]),
                                                           "llm_train_10", "sha")
    from fewshot.train import labelled_logits, run_hash
    assert run_hash(on) != run_hash(off)  # a run trained the other way is retrained, not skipped
    assert labelled_logits(cfg)
    assert not labelled_logits(load_config(cfg.path, ["train.extra.enable_liger_kernel=true"]))  # Liger: no cut


def test_the_scheduler_weighs_a_run_by_its_tokens_so_longer_texts_of_one_size_start_first(write_config):
    """The lanes end together only if the heaviest run starts first: of two subsets of one size the one
    with longer rows is more work, and a missing token count falls back to the size."""
    from fewshot.train import run_weight
    cfg = load_config(write_config({"train.num_train_epochs": 3, "train.min_steps": 0,
                                     "train.per_device_train_batch_size": 2, "train.gradient_accumulation_steps": 4}))
    random_rows, typical_rows = {"tokens": {"mean": 212.5}}, {"tokens": {"mean": 230.8}}
    assert run_weight(cfg, typical_rows, 128) > run_weight(cfg, random_rows, 128) > run_weight(cfg, typical_rows, 64)
    assert run_weight(cfg, random_rows, 128) == pytest.approx(128 * 3 * 212.5)
    assert run_weight(cfg, {}, 64) == 64 * 3
    raised = load_config(cfg.path, ["train.min_steps=12"])  # 16 rows at batch 8: 2 steps an epoch, so 6 epochs
    assert run_weight(raised, random_rows, 16) == pytest.approx(16 * 6 * 212.5)


def test_rows_passed_counts_the_epochs_a_step_floor_adds(write_config):
    """What a run's seconds grow with (the cost table reads it): the encoder's 100-step floor makes 16 and
    128 rows nearly the same work, 400 rows twice as much; methods without a floor count their rows."""
    from fewshot.runs import rows_passed
    cfg = load_config(write_config({"baselines.encoder_epochs": 4, "baselines.encoder_batch_size": 8,
                                     "baselines.encoder_min_steps": 100, "baselines.setfit_iterations": 2,
                                     "train.num_train_epochs": 3, "train.min_steps": 0}))
    assert rows_passed(cfg, "encoder", 16) == 800 and rows_passed(cfg, "encoder", 128) == 7 * 128
    assert rows_passed(cfg, "encoder", 400) == 1600
    assert rows_passed(cfg, "llm_lora", 64) == 192 and rows_passed(cfg, "setfit", 64) == 128
    assert rows_passed(cfg, "tfidf", 64) == 64
