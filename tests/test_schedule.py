"""Spreading runs: one run per GPU at once (scheduled on CPU with a fake device list), and shards
that split a study between machines."""
import threading
import time

import pytest

from fewshot.config import load_config
from fewshot.errors import ConfigError
from fewshot.runs import eval_names, run_names, shard_of
from fewshot.schedule import run_on_slots, visible_gpus


def test_every_run_once_one_per_device_longest_first_failures_isolated():
    jobs = [(f"run{w}", w, w) for w in (1, 5, 3, 8, 2, 7)]
    log, lock, busy = [], threading.Lock(), {}

    def work(weight, slot):
        with lock:
            assert slot not in busy, "two runs on one device"
            busy[slot] = weight
            log.append((weight, slot))
        time.sleep(0.05 * weight / 8)
        with lock:
            del busy[slot]
        if weight == 3:
            raise RuntimeError("CUDA out of memory")
        return "trained"

    status = run_on_slots(jobs, ["0", "1", "2"], work)
    assert sorted(w for w, _ in log) == [1, 2, 3, 5, 7, 8]          # each run exactly once
    assert [w for w, _ in log][:3] == [8, 7, 5]                     # the longest start first
    assert {s for _, s in log} == {"0", "1", "2"}                   # every device used
    assert status["run3"] == "failed" and all(v == "trained" for k, v in status.items() if k != "run3")


def test_visible_gpus_follow_cuda_visible_devices_and_the_limit(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    assert visible_gpus() == ["2", "3", "5"] and visible_gpus(2) == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_train_spreads_runs_over_the_fake_gpus(write_config, monkeypatch):
    import fewshot.train as T
    from fewshot.data import build
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    cfg = load_config(write_config({"data.sizes": [10, 20, 30], "train.device": "cuda"}))
    build(cfg)
    seen = []
    monkeypatch.setattr(T, "train_one", lambda cfg, name, size, seed, sha, lock, gpu: seen.append((name, gpu)) or "trained")
    assert T.run_all(cfg) == 0
    assert sorted(n for n, _ in seen) == ["llm_train_10", "llm_train_20", "llm_train_30"]
    # the largest run is among the first two started on the two cards (which of the two threads
    # reaches train_one first is up to the OS scheduler)
    assert {g for _, g in seen} <= {"0", "1"} and "llm_train_30" in [n for n, _ in seen[:2]]
    monkeypatch.setenv("FORCE_TORCHRUN", "1")  # one run over all cards through LLaMA-Factory's launcher
    seen.clear()
    assert T.run_all(cfg) == 0 and {g for _, g in seen} == {None}


def test_runs_per_gpu_shares_each_card_between_runs(write_config, monkeypatch):
    import fewshot.train as T
    from fewshot.data import build
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    cfg = load_config(write_config({"data.sizes": [10, 20, 30], "train.device": "cuda", "train.runs_per_gpu": 2}))
    assert T.gpu_slots(cfg) == ["3", "3"]
    build(cfg)
    lock, live, most = threading.Lock(), [0], [0]

    def one(cfg, name, size, seed, sha, run_lock, gpu):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.1)
        with lock:
            live[0] -= 1
        return "trained"
    monkeypatch.setattr(T, "train_one", one)
    assert T.run_all(cfg) == 0 and most[0] == 2        # two runs at once on the one card, never three


def test_shards_partition_the_train_and_eval_runs(write_config):
    cfg = load_config(write_config({"data.sizes": [10, 20, 30], "data.seeds": [0, 1], "eval.icl": True}))
    for names in ([n for n, _, _ in run_names(cfg)], eval_names(cfg)):
        parts = [shard_of(names, f"{i}/3") for i in range(3)]
        assert sorted(sum(parts, [])) == sorted(names)                       # every run in some shard
        assert sum(len(p) for p in parts) == len(names)                      # and in one only
    with pytest.raises(ConfigError, match="--shard '3/3'"):
        shard_of([1, 2], "3/3")
    with pytest.raises(ConfigError, match="expected i/n"):
        shard_of([1, 2], "half")
