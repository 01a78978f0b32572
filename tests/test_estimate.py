"""The study's time estimate: the work it counts, and how it scales with this machine's speed."""
import json
from pathlib import Path

import pytest

from conftest import MODEL
from fewshot.config import load_config
from fewshot.data import build
import fewshot.estimate as E

REF = {"cpu": "a 2-core test CPU (avx2)", "cpu_kind": "avx2", "probe_gflops": 100.0, "train_flop_share": 0.5,
       "serve_flop_share": 0.5, "icl_serve_flop_share": 0.25, "train_start_s": 20.0, "merge_s": 20.0,
       "server_start_s": 40.0, "encoder_start_s": 0.0, "encoder_row_pass_s": 0.2, "setfit_start_s": 10.0,
       "setfit_row_s": 0.5, "report_s": 30.0}


@pytest.fixture
def cfg(write_config):
    if not (MODEL / "config.json").exists():
        pytest.skip("model folder missing: run bash setup.sh")
    c = load_config(write_config({"train.num_train_epochs": 2, "train.min_steps": 4,
                                  "train.per_device_train_batch_size": 1, "train.gradient_accumulation_steps": 8,
                                  "eval.icl": True, "eval.icl_sizes": "smallest", "eval.icl_free": False,
                                  "baselines.seeds": [0, 1], "baselines.encoder_batch_size": 8,
                                  "baselines.encoder_epochs": 1, "baselines.encoder_min_steps": 3}))
    build(c)
    return c


def test_work_counts_what_the_config_runs(cfg):
    w = E.work(cfg)
    files = json.loads((Path(cfg.data.out_dir) / "manifest.json").read_text())["files"]
    mean = lambda f: files[f]["tokens"]["mean"]
    # 10 rows: 2 steps an epoch, so min_steps 4 needs 2 epochs; 30 rows: 4 steps an epoch, 2 epochs
    assert w["train_tokens"] == pytest.approx(10 * 2 * mean("llm_train_10") + 30 * 2 * mean("llm_train_30"))
    assert (w["train_runs"], w["adapters"], w["base_runs"], w["icl_runs"]) == (2, 2, 2, 1)
    # encoder: 10 rows = 2 batches of 8, the 3-step floor makes 2 whole epochs = 4 steps; 30 rows =
    # 4 batches, 1 epoch = 4 steps; 8 rows a step, 2 seeds
    assert w["encoder_row_passes"] == (4 + 4) * 8 * 2 and w["encoder_runs"] == 4
    assert w["setfit_rows"] == (10 + 30) * 2 and w["eval_rows"] == 40
    assert w["params"] > 1e8  # SmolLM2-135M, from its safetensors header


def test_a_machine_twice_as_fast_at_matrix_products_is_estimated_twice_as_fast(cfg, monkeypatch):
    monkeypatch.setattr(E, "reference", lambda **k: REF)
    monkeypatch.setattr(E, "has_gpu", lambda: False)
    monkeypatch.setattr(E, "device_and_precision", lambda c: ("cpu", "fp32"))
    monkeypatch.setattr(E, "lanes", lambda parallel, jobs: 1)  # one run at a time
    w = E.work(cfg)
    slow, fast = E.estimate(cfg, w, {"fp32": 100.0}), E.estimate(cfg, w, {"fp32": 200.0})
    for stage in ("train", "eval", "baselines", "report"):
        assert fast[stage] == pytest.approx(slow[stage] / 2, abs=0.06)
    # the train stage: start-ups plus 4 x params x tokens at half of the probe's 100 GFLOP/s
    expect = (2 * 20 + 4 * w["params"] * w["train_tokens"] / 50e9) / 60
    assert slow["train"] == pytest.approx(expect, abs=0.06)
    assert slow["total"] == pytest.approx(sum(slow[s] for s in ("train", "eval", "baselines", "report")), abs=0.2)


def test_runs_side_by_side_are_estimated_as_lanes_heaviest_first(cfg, monkeypatch):
    assert E.makespan([5, 4, 3, 3, 3], 2) == 10         # 5+3 | 4+3+3: each run to the first free lane
    assert E.makespan([8, 1, 1], 2) == 8 and E.makespan([8, 1, 1], 1) == 10
    monkeypatch.setattr(E, "reference", lambda **k: REF)
    monkeypatch.setattr(E, "has_gpu", lambda: False)
    monkeypatch.setattr(E, "device_and_precision", lambda c: ("cpu", "fp32"))
    w = E.work(cfg)
    monkeypatch.setattr(E, "lanes", lambda parallel, jobs: 1)
    one = E.estimate(cfg, w, {"fp32": 100.0})
    monkeypatch.setattr(E, "lanes", lambda parallel, jobs: 2)
    two = E.estimate(cfg, w, {"fp32": 100.0})
    runs = [20 + 4 * w["params"] * t / 50e9 for t in w["train_run_tokens"]]
    assert two["train"] == pytest.approx(max(runs) / 60, abs=0.06) and one["train"] == pytest.approx(sum(runs) / 60, abs=0.06)
    assert two["baselines"] < one["baselines"] and two["eval"] < one["eval"]   # servers side by side too


def test_no_estimate_without_a_calibration_or_on_a_gpu(cfg, monkeypatch):
    monkeypatch.setattr(E, "reference", lambda **k: {})
    assert E.estimate(cfg, gflops={"fp32": 100.0}) == {}
    monkeypatch.setattr(E, "reference", lambda **k: REF)
    monkeypatch.setattr(E, "has_gpu", lambda: True)
    assert E.estimate(cfg, gflops={"fp32": 100.0}) == {}


def test_a_negative_start_up_is_not_fitted():
    assert E._least_squares([16, 32, 64], [26.0, 42.0, 74.0]) == pytest.approx((10.0, 1.0))
    a, b = E._least_squares([16, 32, 64], [1.0, 40.0, 100.0])   # would cross zero above 0
    assert a == 0.0 and b == pytest.approx(141.0 / 112)


def test_the_estimate_says_when_it_was_calibrated_with_other_lanes(cfg, monkeypatch):
    monkeypatch.setattr(E, "has_gpu", lambda: False)
    monkeypatch.setattr(E, "device_and_precision", lambda c: ("cpu", "fp32"))
    monkeypatch.setattr(E, "probes", lambda c: {"fp32": 100.0})
    monkeypatch.setattr(E, "lanes", lambda parallel, jobs: 2)
    monkeypatch.setattr(E, "cpu_kind", lambda: "avx2")  # REF's kind, whatever CPU runs the test
    monkeypatch.setattr(E, "reference", lambda **k: {**REF, "train_lanes": 2, "eval_lanes": 2, "baseline_lanes": 2})
    assert "expect a larger error" not in E.describe(cfg)
    monkeypatch.setattr(E, "reference", lambda **k: REF)   # calibrated one run at a time
    assert "runs side by side there 1/1/1, here 2/2/2 (train/eval/baselines): expect a larger error" in E.describe(cfg)


def test_the_calibration_used_is_timed_in_the_studys_precision_then_on_its_cpu_kind(tmp_path, monkeypatch):
    cal = {"amx": {**REF, "cpu_kind": "amx", "probe_gflops": 400.0}, "avx2": REF}  # the file's order must not decide
    path = tmp_path / "estimate_calibration.json"
    path.write_text(json.dumps(cal))
    monkeypatch.setattr(E, "CALIBRATION", path)
    assert E.reference("avx512", "fp32")["cpu_kind"] == "avx2"          # fp32 like AVX2, not bf16 like AMX
    assert E.reference("avx512_bf16", "bf16")["cpu_kind"] == "amx"
    assert E.reference("amx", "fp32")["cpu_kind"] == "avx2"             # the precision before the kind
    cal["amx_fp32"] = {**cal["amx"], "precision": "fp32"}
    path.write_text(json.dumps(cal))
    assert E.reference("amx", "fp32") == cal["amx_fp32"] and E.reference("amx", "bf16") == cal["amx"]
    # another fp32 CPU: the fp32 calibration whose probe is nearest its own
    assert E.reference("avx512", "fp32", fp32_gflops=350.0) == cal["amx_fp32"]
    assert E.reference("avx512", "fp32", fp32_gflops=120.0) == REF
    path.write_text(json.dumps({"amx": cal["amx"]}))
    assert E.reference("avx512", "fp32")["cpu_kind"] == "amx"           # the only one there is
    path.unlink()
    assert E.reference("avx2", "fp32") == {}


def test_adapters_loaded_into_a_kept_server_are_priced_at_the_reload_not_a_start(cfg, monkeypatch):
    """eval.reload_weights: one server start per lane, each later adapter costs the measured reload."""
    from fewshot.config import override
    monkeypatch.setattr(E, "reference", lambda **k: {**REF, "reload_s": 4.0})
    monkeypatch.setattr(E, "has_gpu", lambda: False)
    monkeypatch.setattr(E, "reloads_weights", lambda e: e.reload_weights != "never")
    monkeypatch.setattr(E, "device_and_precision", lambda c: ("cpu", "fp32"))
    monkeypatch.setattr(E, "lanes", lambda parallel, jobs: 1)
    w = E.work(cfg)
    assert w["adapters"] == 2
    kept = E.estimate(override(cfg, ["eval.reload_weights=always"]), w, {"fp32": 100.0})
    fresh = E.estimate(override(cfg, ["eval.reload_weights=never"]), w, {"fp32": 100.0})
    assert fresh["eval"] - kept["eval"] == pytest.approx((40.0 - 4.0) / 60, abs=0.06)  # the second adapter's start
