"""Child processes we start and stop by their own PID (process group), never by name."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path


def start(cmd: list[str], log_path: str | os.PathLike, env: dict | None = None,
          cwd: str | None = None, pass_fds: tuple = ()) -> subprocess.Popen:
    """Start cmd in a new session (its own process group) with stdout+stderr appended to a log;
    pass_fds: descriptors the child inherits (a run's lock)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab", buffering=0)
    log.write(f"\n$ {' '.join(cmd)}\n".encode())
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True, pass_fds=tuple(pass_fds))
    finally:
        log.close()  # the child keeps its own descriptor


def wait(proc: subprocess.Popen, live: set) -> int:
    """Wait for a child we started, listed in `live` meanwhile (another thread's Ctrl-C stops what is
    listed there); stopped by its process group if we are interrupted. Its exit code."""
    live.add(proc)
    try:
        return proc.wait()
    except BaseException:
        stop(proc)
        raise
    finally:
        live.discard(proc)


def stop(proc: subprocess.Popen | None, grace: float = 15.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after `grace` seconds."""
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        proc.poll()
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.2)
    proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def tail(path: str | os.PathLike, lines: int = 25) -> str:
    p = Path(path)
    if not p.exists():
        return f"(no log at {p})"
    text = p.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@contextmanager
def environ(extra: dict[str, str]):
    """os.environ with `extra` set while processes that inherit it start (a multiprocessing pool's
    workers), as it was afterwards."""
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TermAsInterrupt:
    """Turn SIGTERM (plain `kill` of the script) into KeyboardInterrupt so the same cleanup runs."""

    def __enter__(self):
        import threading
        self._old = None
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            self._old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None
        return False
