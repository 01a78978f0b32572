"""`python -m fewshot bench profile`: a finished study's seconds run by run, read from what the
steps recorded; a shared server's start-up counted once; the LLM's FLOP/s from its token counts."""
import json

from conftest import ROOT
from fewshot.bench import profile_rows
from fewshot.config import load_config


def test_profile_counts_a_shared_server_once_and_the_tokens_it_computed(tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"eval.out_dir={tmp_path / 'objs'}",
                                                       f"train.log_dir={tmp_path / 'logs'}"])
    (tmp_path / "objs").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "train_summary.jsonl").write_text(json.dumps(
        {"run": "llm_train_16", "rows": 16, "wall_s": 90.0, "train_runtime_s": 80.0, "tokens_seen": 8000}) + "\n")
    tok = {"prompt_tokens": 50000, "cached_tokens": 10000, "generated_tokens": 400}
    runs = {"zero_shot": {"seconds": 100.0, "server_start_s": 50.0, "first_on_server": True, "tokens": tok},
            "zero_shot_constrained": {"seconds": 20.0, "server_start_s": 50.0, "first_on_server": False},
            "llm_train_16": {"seconds": 90.0, "server_start_s": 45.0, "merge_s": 20.0, "first_on_server": True}}
    for name, sc in runs.items():
        (tmp_path / "objs" / f"{name}.json").write_text(json.dumps({"name": name, "method": "llm_x", "scoring": sc}))
    (tmp_path / "objs" / "encoder_16_s0.json").write_text(json.dumps({"name": "encoder_16_s0", "method": "encoder",
                                                                      "seconds": 131.6}))
    rows = {r["run"] + "/" + r["work"]: r for r in profile_rows(cfg, n_params=1e8, probe=100.0)}
    assert rows["llm_train_16/LLM training"]["seconds"] == 90
    assert rows["llm_train_16/LLM training"]["GFLOP/s (of probe)"] == "40 (40%)"  # 4 x 1e8 x 8000 / 80 s
    assert rows["zero_shot/LLM scoring"]["seconds"] == 150
    assert rows["zero_shot_constrained/LLM scoring"]["seconds"] == 20  # its server was zero_shot's
    assert rows["llm_train_16/LLM scoring"]["seconds"] == 155  # merge + start + scoring
    # 2 x 1e8 x (50000 - 10000 cached + 400 generated) / 100 s
    assert rows["zero_shot/LLM scoring"]["GFLOP/s (of probe)"] == "81 (81%)"
    assert rows["zero_shot_constrained/LLM scoring"]["GFLOP/s (of probe)"] == "-"  # no counters: not guessed
    assert rows["encoder_16_s0/encoder"]["seconds"] == 132


def test_a_run_on_a_lane_is_measured_against_its_share_of_the_probe(tmp_path, monkeypatch):
    import fewshot.devices as D
    monkeypatch.setattr(D, "usable_cpus", lambda: [0, 1])
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"eval.out_dir={tmp_path / 'objs'}",
                                                       f"train.log_dir={tmp_path / 'logs'}"])
    (tmp_path / "objs").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "train_summary.jsonl").write_text("".join(json.dumps(
        {"run": f"llm_train_{n}", "rows": n, "wall_s": 90.0, "train_runtime_s": 80.0, "tokens_seen": 8000, "cores": c})
        + "\n" for n, c in ((16, [1]), (32, None))))
    rows = {r["run"]: r for r in profile_rows(cfg, n_params=1e8, probe=100.0)}
    assert rows["llm_train_16"]["GFLOP/s (of probe)"] == "40 (80%)" and rows["llm_train_16"]["cores"] == "1"
    assert rows["llm_train_32"]["GFLOP/s (of probe)"] == "40 (40%)" and rows["llm_train_32"]["cores"] == "all"


def test_bench_study_runs_study_sh_on_the_resolved_config_and_files_it_by_precision(tmp_path, monkeypatch):
    """--set reaches every stage (study.sh gets a file, not the override strings), and a study run
    in another precision than the CPU's native one does not replace that one's figures."""
    import subprocess
    import fewshot.bench as B
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"train.log_dir={tmp_path / 'logs'}", "train.precision=fp32",
                                                       "data.sizes=[16,32,64]"])
    seen = {}

    def fake_study(cmd, env):
        seen.update(cmd=cmd, config=env["CONFIG"])
        return subprocess.CompletedProcess(cmd, 1)  # failed: no profile afterwards

    monkeypatch.setenv("FEWSHOT_BENCH_FRESH", "0")
    monkeypatch.setattr(B.subprocess, "run", fake_study)
    monkeypatch.setattr(B, "RESULTS", tmp_path / "results")
    assert B.bench_study(cfg) == 1
    assert seen["cmd"][-1].endswith("study.sh")
    ran = load_config(seen["config"])
    assert ran.train.precision == "fp32" and ran.data.sizes == [16, 32, 64]
    assert {k: v for k, v in ran.as_dict().items() if k != "path"} == {k: v for k, v in cfg.as_dict().items() if k != "path"}
    m = B.machine()
    tag = m["cpu_kind"] + ("_fp32" if m["native_bf16"] else "")
    assert [f.name for f in (tmp_path / "results").iterdir()] == [f"study_{tag}.json"]
    assert json.loads((tmp_path / "results" / f"study_{tag}.json").read_text())["machine"]["precision"] == "fp32"


def test_encoder_setfit_and_embeddings_get_flops_from_the_tokens_they_read(tmp_path, monkeypatch):
    """6 x params per trained token, 2 x per encoded one; the encoder's row passes come from its step
    floor, SetFit's texts from its pairs; a run without token records is not guessed."""
    import fewshot.devices as D
    monkeypatch.setattr(D, "usable_cpus", lambda: [0, 1])
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"eval.out_dir={tmp_path / 'objs'}", f"train.log_dir={tmp_path / 'logs'}",
                                                       f"data.out_dir={tmp_path / 'data'}", "baselines.encoder_min_steps=100",
                                                       "baselines.encoder_batch_size=8", "baselines.setfit_iterations=1"])
    for d in ("objs", "logs", "data/embeddings"):
        (tmp_path / d).mkdir(parents=True)
    cut = {"train_tokens": 1600, "eval_tokens": 20000}  # 16 rows of 100 tokens
    for name, method, secs in (("encoder_16_s0", "encoder", 100.0), ("setfit_16_s0", "setfit", 10.0)):
        (tmp_path / "objs" / f"{name}.json").write_text(json.dumps(
            {"name": name, "method": method, "train_rows": 16, "seconds": secs, "cut": cut, "cores": [1]}))
    (tmp_path / "objs" / "setfit_32_s0.json").write_text(json.dumps(
        {"name": "setfit_32_s0", "method": "setfit", "train_rows": 32, "seconds": 10.0, "cut": {"train": 0}}))
    (tmp_path / "data" / "embeddings" / "abc.json").write_text(json.dumps(
        {"rows": 10, "tokens": 50000, "seconds": 10.0, "precision": "bf16", "cores": [0, 1]}))
    rows = {r["run"]: r for r in profile_rows(cfg, n_params=1e8, probe=100.0, enc_params=1e7, enc_probe=40.0)}
    # encoder: 100 steps x 8 rows = 800 passes x 100 tokens x 6e7 + 20000 x 2e7 = 4.8e12 + 4e11 over 100 s; a lane: 20
    assert rows["encoder_16_s0"]["GFLOP/s (of probe)"] == "52 (260%)"
    # SetFit: 4 x 16 texts x 100 tokens x 6e7 + (1600 + 20000) x 2e7 = 3.84e11 + 4.32e11 over 10 s
    assert rows["setfit_16_s0"]["GFLOP/s (of probe)"] == "82 (408%)"
    assert rows["setfit_32_s0"]["GFLOP/s (of probe)"] == "-"
    # embeddings: 2 x 1e7 x 50000 / 10 s on both cores
    assert rows["embeddings abc"]["GFLOP/s (of probe)"] == "100 (250%)"
