"""Serving and scoring under injected faults, against a fake OpenAI-compatible server."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from fewshot.client import ScoringError, score
from fewshot.fileio import read_jsonl
from fewshot.metrics import compute, match_label
from fewshot.prompt import alpaca_row, build_instruction
from fewshot.serve import ServerError, VLLMServer, free_port

LABELS = ["Physics", "Chemistry", "Electricity"]
FAKE = str(ROOT / "tests" / "fake_openai.py")


def rows(n=12):
    ins = build_instruction(LABELS)
    return [alpaca_row(ins, f"document {i}", LABELS[i % 3]) for i in range(n)]


def fake(mode, n=0, tmp=None, timeout=20):
    port = free_port()
    cmd = [sys.executable, FAKE, str(port), mode, str(n)]
    return VLLMServer(cmd, port, Path(tmp) / f"fake-{mode}-{port}.log", start_timeout=timeout)


def _score(url, path, **kw):
    kw = {"concurrency": 4, "timeout": 5, "max_retries": 2, "progress": False, **kw}
    return score(url, "base", rows(), LABELS, path, **kw)


def test_good_server_scores_every_row_and_rerun_scores_nothing(tmp_path):
    preds = tmp_path / "p.jsonl"
    with fake("good", tmp=tmp_path) as url:
        assert _score(url, preds)["scored"] == 12
        assert _score(url, preds)["scored"] == 0
    got = read_jsonl(preds)
    assert sorted(r["i"] for r in got) == list(range(12))
    assert all(r["pred"] == "Physics" and r["raw"] == " physics." for r in got)  # normalised match


def test_server_that_never_becomes_ready_is_reported_and_stopped(tmp_path):
    srv = fake("never_ready", tmp=tmp_path, timeout=3)
    with pytest.raises(ServerError, match="not ready after 3s"):
        srv.__enter__()
    assert srv.proc.poll() is not None  # stopped by its PID


def test_server_that_exits_at_start_shows_its_log(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; print('boom: bad model'); sys.exit(3)"]
    with pytest.raises(ServerError, match="(?s)exited with code 3.*boom: bad model"):
        with VLLMServer(cmd, port, tmp_path / "x.log", 10):
            pass


def test_port_already_in_use(tmp_path):
    with fake("good", tmp=tmp_path) as url:
        port = int(url.split(":")[-1].split("/")[0])
        with pytest.raises(ServerError, match=f"port {port} .* already in use"):
            with VLLMServer([sys.executable, FAKE, str(port), "good"], port, tmp_path / "y.log", 5):
                pass


def test_server_killed_mid_eval_resumes_without_loss_or_duplicates(tmp_path):
    preds = tmp_path / "p.jsonl"
    with fake("die_after", n=5, tmp=tmp_path) as url:
        with pytest.raises(ScoringError, match="requests failed after retries.*rerun to finish"):
            _score(url, preds, concurrency=1, max_retries=1, timeout=3)
    first = read_jsonl(preds)
    assert len(first) == 5
    with fake("good", tmp=tmp_path) as url:
        assert _score(url, preds)["scored"] == 7
    ids = [r["i"] for r in read_jsonl(preds)]
    assert sorted(ids) == list(range(12))  # none lost, none twice


def test_500s_are_retried(tmp_path):
    preds = tmp_path / "p.jsonl"
    with fake("flaky", tmp=tmp_path) as url:
        assert _score(url, preds, concurrency=1, max_retries=3)["scored"] == 12
    assert len(read_jsonl(preds)) == 12


def test_a_stalled_server_is_reported_after_the_timeout(tmp_path):
    preds = tmp_path / "p.jsonl"
    with fake("slow", tmp=tmp_path) as url:
        t0 = time.time()
        with pytest.raises(ScoringError, match=r"12 of 12 requests failed.*Timeout: no answer from the server for 1 s"):
            _score(url, preds, concurrency=12, max_retries=1, timeout=1)
        assert time.time() - t0 < 25
    assert read_jsonl(preds) == []


def test_a_queue_longer_than_the_timeout_is_waited_for_not_retried(tmp_path, monkeypatch):
    """On a slow CPU, 64 requests in flight wait minutes behind each other: as long as answers keep
    coming, none of them has timed out, and none is sent twice (a retry recomputes its prompt)."""
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv("FAKE_REQUESTS", str(log))
    preds = tmp_path / "p.jsonl"
    with fake("queue", 300, tmp=tmp_path) as url:  # one answer every 0.3 s: the 12th comes after 3.6 s
        t0 = time.time()
        assert _score(url, preds, concurrency=12, max_retries=2, timeout=1)["scored"] == 12
        assert time.time() - t0 > 3
    assert sorted(r["i"] for r in read_jsonl(preds)) == list(range(12))
    assert len(read_jsonl(log)) == 12


def test_garbage_answers_count_as_invalid_not_random(tmp_path):
    preds = tmp_path / "p.jsonl"
    with fake("garbage", tmp=tmp_path) as url:
        _score(url, preds)
    got = read_jsonl(preds)
    assert all(r["pred"] is None and r["raw"] == "banana split" for r in got)
    m = compute([r["pred"] for r in got], [r["label"] for r in got], LABELS, n_boot=10)
    assert m["invalid"] == 12 and m["accuracy"] == 0.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C, and a plain `kill`/`timeout`
def test_interrupted_eval_stops_the_server(tmp_path, sig):
    script = tmp_path / "run.py"
    script.write_text(f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from fewshot.serve import VLLMServer, free_port
port = free_port()
srv = VLLMServer([sys.executable, {FAKE!r}, str(port), 'slow'], port, {str(tmp_path / 'c.log')!r}, 20)
with srv:
    print(srv.proc.pid, flush=True)
    time.sleep(120)
""")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    server_pid = int(p.stdout.readline())
    os.kill(server_pid, 0)  # alive
    p.send_signal(sig)
    p.wait(timeout=30)
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


@pytest.mark.parametrize("answer, expected", [
    ("Physics", "Physics"), ("  physics\n", "Physics"), ('"Physics".', "Physics"), ("**Physics**", "Physics"),
    ("Physics and Chemistry", None), ("", None), ("The answer is Physics", None),
])
def test_answer_normalisation(answer, expected):
    assert match_label(answer, LABELS) == expected


def test_scoring_twice_in_one_process_works(tmp_path):
    # multi_lora scores several runs in one process: each call runs its own event loop
    with fake("good", tmp=tmp_path) as url:
        for k in range(3):
            assert _score(url, tmp_path / f"p{k}.jsonl")["scored"] == 12


def test_a_plain_kill_stops_the_servers_of_every_lane(tmp_path):
    """Runs side by side on CPU lanes start their servers in worker threads, where no signal handler can
    be set: a plain `kill` of the step (SIGTERM reaches the main thread only) must still stop each one."""
    script = tmp_path / "lanes.py"
    script.write_text(f"""
import sys, threading, time
sys.path.insert(0, {str(ROOT)!r})
from fewshot import procs
from fewshot.schedule import run_on_slots
lock = threading.Lock()
from fewshot.serve import VLLMServer, free_port
servers = []
def work2(name, lane):
    port = free_port()
    srv = VLLMServer([sys.executable, {FAKE!r}, str(port), 'slow'], port, {str(tmp_path)!r} + f'/{{name}}.log', 20)
    with srv:
        servers.append(srv.proc)
        with lock:  # one line per server: two threads' prints can interleave
            sys.stdout.write(f"{{srv.proc.pid}}\\n")
            sys.stdout.flush()
        while srv.proc.poll() is None:  # scoring, until its server goes
            time.sleep(0.2)
    return 'done'
run_on_slots([('a', 1, 'a'), ('b', 1, 'b')], [[0], [1]], work2, lambda: [procs.stop(p) for p in list(servers)])
""")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p.stdout.readline()), int(p.stdout.readline())]
    for pid in pids:
        os.kill(pid, 0)  # both lanes' servers are up
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    time.sleep(0.5)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bootstrap_macro_f1_is_scikit_learns_on_every_resample():
    """metrics.macro_f1 (counted with bincount) against sklearn's f1_score, zero_division=0, on
    random answers with invalid ones (-1), absent labels and perfect runs; and the intervals move
    with the answers."""
    import numpy as np
    from sklearn.metrics import f1_score

    from fewshot.metrics import bootstrap, macro_f1
    rng = np.random.default_rng(7)
    for t in range(500):
        k, n = int(rng.integers(2, 12)), int(rng.integers(1, 80))
        g = rng.integers(0, k, n)
        p = g.copy() if t % 5 == 0 else rng.integers(-1, k, n)
        want = float(f1_score(g, p, labels=list(range(k)), average="macro", zero_division=0))
        assert macro_f1(p, g, k) == want
    g = rng.integers(0, 4, 200)
    good, bad = bootstrap(g.copy(), g, 4, 200, 0), bootstrap(rng.integers(-1, 4, 200), g, 4, 200, 0)
    assert good["macro_f1_ci95"] == [1.0, 1.0] and bad["macro_f1_ci95"][1] < 0.5
