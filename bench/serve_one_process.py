"""A one-core vLLM CPU server with its model in a worker process of its own (vLLM's default) and
inside the engine process (VLLM_ENABLE_V1_MULTIPROCESSING=0, what devices.cpu_serving_env sets),
side by side on the two cores, then on swapped cores: seconds to ready, seconds for 64 prompts of
~260 tokens in flight at once, and a digest of the greedy answers.
    .venv/bin/python bench/serve_one_process.py --model saves/merged/llm_train_32   (after eval.sh)"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fewshot.bench import machine  # noqa: E402
from fewshot.fileio import atomic_write_json  # noqa: E402


def one(mode: str, core: int, model: str, n: int) -> dict:
    """In a child process, so each mode sets its own environment before the server starts."""
    from fewshot.serve import VLLMServer, free_port, vllm_command
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if mode == "one_process" else "1"
    port = free_port()
    cmd = vllm_command(model, "m", port, cpu_dtype="bfloat16", max_model_len=768, in_flight=64, extra=["--enforce-eager"])
    t0 = time.time()
    with VLLMServer(cmd, port, f"/tmp/serve_one_process_{mode}_{core}.log", cpus=[core]) as url:
        ready = time.time() - t0

        def ask(i):
            prompt = f"Document {i}: " + " ".join(f"word{(i * 7 + j) % 101}" for j in range(250)) + "\nSection:"
            req = urllib.request.Request(url + "/completions", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"model": "m", "prompt": prompt, "max_tokens": 4,
                                                          "temperature": 0}).encode())
            return json.load(urllib.request.urlopen(req))["choices"][0]["text"]
        with ThreadPoolExecutor(64) as ex:
            answers = list(ex.map(ask, range(n)))
        scoring = time.time() - t0 - ready
    return {"mode": mode, "core": core, "ready_s": round(ready, 1), "scoring_s": round(scoring, 1),
            "answers_md5": hashlib.md5(repr(answers).encode()).hexdigest()[:8]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="saves/merged/llm_train_32")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--out", help="default: bench/results/serve_one_process_<cpu kind>.json")
    a = ap.parse_args()
    a.out = a.out or f"bench/results/serve_one_process_{machine()['cpu_kind']}.json"
    if a.child:
        print(json.dumps(one(a.child[0], int(a.child[1]), str(Path(a.model).resolve()), a.n)))
        sys.exit(0)
    rows = []
    for cores in ({"worker_process": 0, "one_process": 1}, {"worker_process": 1, "one_process": 0}):
        kids = [subprocess.Popen([sys.executable, __file__, "--model", a.model, "--n", str(a.n), "--child", m, str(c)],
                                 stdout=subprocess.PIPE, text=True) for m, c in cores.items()]
        for k in kids:
            out, _ = k.communicate()
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    atomic_write_json(ROOT / a.out, {"what": "one-core vLLM CPU server: model in its own worker process or in the engine process",
                                     "command": "bench/serve_one_process.py", "model": a.model, "machine": machine(),
                                     "rows": rows, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
