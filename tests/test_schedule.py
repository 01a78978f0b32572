"""Spreading runs: one run per GPU at once (scheduled on CPU with a fake device list), and shards
that split a study between machines."""
import os
import threading
import time

import pytest

from conftest import ROOT
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
    for names in ([r[0] for r in run_names(cfg)], eval_names(cfg)):
        parts = [shard_of(names, f"{i}/3") for i in range(3)]
        assert sorted(sum(parts, [])) == sorted(names)                       # every run in some shard
        assert sum(len(p) for p in parts) == len(names)                      # and in one only
    with pytest.raises(ConfigError, match="--shard '3/3'"):
        shard_of([1, 2], "3/3")
    with pytest.raises(ConfigError, match="expected i/n"):
        shard_of([1, 2], "half")


def test_cpu_lanes_split_the_cores_and_fall_back_to_one_run(monkeypatch):
    import fewshot.devices as D
    monkeypatch.setattr(D, "has_gpu", lambda: False)
    monkeypatch.setattr(D, "usable_cpus", lambda: [0, 1, 2, 3, 4])
    assert D.cpu_lanes(2, 10) == [[0, 1], [2, 3]]
    assert D.cpu_lanes(8, 3) == [[0], [1], [2]]          # never more lanes than runs
    assert D.cpu_lanes(1, 10) == [] and D.cpu_lanes(2, 1) == []
    monkeypatch.setattr(D, "usable_cpus", lambda: [7])
    assert D.cpu_lanes(2, 10) == []                       # one core: one run at a time
    monkeypatch.setattr(D, "usable_cpus", lambda: [0, 1])
    monkeypatch.setattr(D, "has_gpu", lambda: True)
    assert D.cpu_lanes(2, 10) == []


def test_train_on_a_cpu_runs_two_at_once_each_on_its_own_core(write_config, monkeypatch):
    import fewshot.devices as D
    import fewshot.train as T
    from fewshot.data import build
    monkeypatch.setattr(D, "has_gpu", lambda: False)
    monkeypatch.setattr(D, "usable_cpus", lambda: [0, 1])
    cfg = load_config(write_config({"data.sizes": [10, 20, 30], "train.device": "cpu", "train.cpu_parallel": 2}))
    build(cfg)
    lock, live, most, seen = threading.Lock(), [0], [0], []

    def one(cfg, name, size, seed, sha, run_lock, gpu, cpus=None):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
            assert cpus not in [c for n, c, on in seen if on], "two runs on one core"
            seen.append([name, cpus, True])
        time.sleep(0.1)
        with lock:
            live[0] -= 1
            next(s for s in seen if s[0] == name)[2] = False
        return "trained"
    monkeypatch.setattr(T, "train_one", one)
    assert T.run_all(cfg) == 0 and most[0] == 2
    assert sorted(n for n, _, _ in seen) == ["llm_train_10", "llm_train_20", "llm_train_30"]
    assert {tuple(c) for _, c, _ in seen} == {(0,), (1,)} and seen[0][0] in ("llm_train_30", "llm_train_20")
    seen.clear()
    most[0] = 0
    assert T.run_all(load_config(cfg.path, ["train.cpu_parallel=1"])) == 0   # one at a time, on every core
    assert most[0] == 1 and [c for _, c, _ in seen] == [None, None, None]


def test_a_cpu_lane_reaches_the_trainer_as_its_threads_and_cores(write_config, monkeypatch):
    import fewshot.procs as P
    import fewshot.train as T
    from fewshot.data import build
    from fewshot.errors import FewshotError
    cfg = load_config(write_config({"data.sizes": [10], "train.device": "cpu"}))
    build(cfg)
    got = {}

    class Exited:  # the trainer, as if it failed at once
        pid = 123456789

        def wait(self):
            return 1

    def start(cmd, log, env=None, **kw):
        got["env"] = env
        return Exited()
    monkeypatch.setattr(P, "start", start)
    monkeypatch.setattr(T, "pin", lambda pid, cpus: got.update(pin=(pid, cpus)))
    with pytest.raises(FewshotError, match="exited with 1"):
        T.train_one(cfg, "llm_train_10", 10, 0, "sha", cpus=[1])
    assert got["env"]["OMP_NUM_THREADS"] == "1" and got.pop("pin") == (123456789, [1])
    with pytest.raises(FewshotError, match="exited with 1"):
        T.train_one(cfg, "llm_train_10", 10, 0, "sha")
    assert got["env"].get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS") and "pin" not in got


def test_the_shard_comes_from_the_slurm_array_unless_given():
    from fewshot.runs import shard_from_env
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from_env(None, env) == "3/4"
    assert shard_from_env("1/2", env) == "1/2"                                   # --shard wins
    assert shard_from_env(None, {**env, "SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}) == "3/4"  # --array=1-4
    assert shard_from_env(None, {"SLURM_ARRAY_TASK_ID": "3"}) is None            # not an array of known size
    with pytest.raises(ConfigError, match="need 0 <= i < n"):
        shard_from_env(None, {**env, "SLURM_ARRAY_TASK_ID": "9"})                  # an array with gaps


def test_a_slurm_array_task_runs_its_shard_only(write_config, monkeypatch, capsys):
    from fewshot import __main__ as cli
    import fewshot.train as T
    seen = {}
    monkeypatch.setattr(T, "run_all", lambda cfg, only, shard: seen.setdefault("shard", shard) and 0)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    cli.main(["train", "--config", str(write_config())])
    assert seen["shard"] == "1/2" and "shard 1/2 from the Slurm array" in capsys.readouterr().out
    seen.clear()
    cli.main(["train", "--config", str(write_config()), "--shard", "0/3"])
    assert seen["shard"] == "0/3"


def test_a_node_without_the_training_env_says_so_before_any_run(write_config, monkeypatch, tmp_path, capsys):
    import fewshot.train as T
    from fewshot.data import build
    from fewshot.errors import FewshotError
    cfg = load_config(write_config())
    build(cfg)
    monkeypatch.setenv("FEWSHOT_TRAIN_ENV", str(tmp_path / "no-env"))
    monkeypatch.setattr(T, "train_one", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(FewshotError, match=f"{tmp_path / 'no-env'}/bin/llamafactory-cli not found: the train env"):
        T.run_all(cfg, shard="0/2")
    assert not list((tmp_path / "saves").glob(".*.lock"))  # no run was taken


@pytest.mark.parametrize("script", ["train.sh", "eval.sh", "study.sh", "slurm/finish.sbatch"])
def test_an_entry_point_on_a_node_without_the_main_env_names_it(script, tmp_path):
    import shutil
    import subprocess
    dst = tmp_path / script
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / script, dst)
    p = subprocess.run(["bash", str(dst)], cwd=tmp_path, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(tmp_path)})
    assert p.returncode == 2
    assert f"{tmp_path}/.venv/bin/python not found on " in p.stderr and "run bash setup.sh" in p.stderr
