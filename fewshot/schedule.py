"""Several runs at once, one per device: on a box with several GPUs the train step gives each
run its own card (CUDA_VISIBLE_DEVICES), longest runs first, so no card idles while runs are
left; a run that fails fails alone. The caller's `work` does the run (locks, skip, resume)."""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from typing import Any, Callable

from .procs import TermAsInterrupt


def visible_gpus(limit: int | None = None) -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else every card nvidia-smi
    lists; at most `limit` (train.gpus)."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is not None:
        ids = [x.strip() for x in vis.split(",") if x.strip()]
    elif shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        ids = [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    else:
        ids = []
    return ids[:limit] if limit else ids


def run_on_slots(jobs: list[tuple[str, float, Any]], slots: list[Any], work: Callable[[Any, Any], str],
                 stop_all: Callable[[], None] = lambda: None) -> dict[str, str]:
    """Run every job once, at most one per slot at a time, heaviest first. jobs: (name, weight,
    payload); slots: device ids, or CPU lanes (lists of cores); work(payload, slot) -> status. An
    exception in one job marks it 'failed' and the others go on; Ctrl-C / SIGTERM calls stop_all()
    and re-raises."""
    free: queue.Queue = queue.Queue()
    for s in slots:
        free.put(s)
    status: dict[str, str] = {}
    threads = []

    def one(name: str, payload: Any, slot: str) -> None:
        try:
            status[name] = work(payload, slot)
        except Exception as e:  # isolated: the other runs carry on
            print(f"[schedule] {name} on device {slot} failed: {type(e).__name__}: {e}", flush=True)
            status[name] = "failed"
        finally:
            free.put(slot)

    with TermAsInterrupt():  # a plain `kill` reaches the main thread only: it stops the lanes' work too
        try:
            for name, _, payload in sorted(jobs, key=lambda j: -j[1]):
                while True:  # wait for a free device (with a timeout, so a signal can interrupt)
                    try:
                        slot = free.get(timeout=0.5)
                        break
                    except queue.Empty:
                        pass
                t = threading.Thread(target=one, args=(name, payload, slot), daemon=True)
                t.start()
                threads.append(t)
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)
        except KeyboardInterrupt:
            stop_all()
            for t in threads:
                t.join(timeout=30)
            raise
    return status
