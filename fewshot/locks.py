"""One writer per run: an OS lock (fcntl.flock) on a file in the run's folder. The OS releases it
when the holder exits or is killed, so a crashed run never blocks a rerun; a second train.sh or
eval.sh skips the runs another live process holds and says which process holds them."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class Busy(Exception):
    """Another live process holds this run."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by PID {holder or '?'}")
        self.path, self.holder = path, holder


@contextmanager
def hold(lock_file: str | os.PathLike):
    """`with hold(path):` the run is ours until the block ends (or we die); raises Busy. The lock
    file lives beside the run's folder, which a retrain may delete and recreate."""
    with _locked(lock_file, wait=None) as held:
        yield held


@contextmanager
def wait_for(lock_file: str | os.PathLike, what: str):
    """`with wait_for(path, what):` as hold, but a live holder is waited for, not skipped: for a step
    every task repeats (the data step of each task of a Slurm array over one project folder)."""
    with _locked(lock_file, wait=what) as held:
        yield held


@contextmanager
def _locked(lock_file: str | os.PathLike, wait: str | None):
    p = Path(lock_file)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            if wait is None:
                raise Busy(p, holder) from None
            print(f"{wait}: waiting for PID {holder or '?'}, which holds {p}", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield Held(p, fd)
    finally:
        os.close(fd)  # closing releases the lock (once no child that inherited it is left)


class Held:
    """A held lock. Pass `fd` to a child process (pass_fds) and the child holds the run too: a
    trainer orphaned by a SIGKILL of its parent still keeps a second train.sh off its run."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def note_child(self, pid: int) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} (child {pid})\n".encode(), 0)
