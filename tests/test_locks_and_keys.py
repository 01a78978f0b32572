"""Safe on a shared box: one writer per run (OS locks that die with their holder), a fresh key on
every server, given through its environment (never its command line or log)."""
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from fewshot.client import ScoringError, score
from fewshot.locks import Busy, hold
from fewshot.prompt import alpaca_row, build_instruction
from fewshot.serve import VLLMServer, free_port, new_api_key

HOLDER = "import sys, time; from fewshot.locks import hold\nwith hold(sys.argv[1]):\n print('held', flush=True); time.sleep(60)"


def _holder(path):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_held_run_is_busy_and_names_the_holder_then_free_once_the_holder_is_killed(tmp_path):
    lock = tmp_path / ".llm_train_16.lock"
    p = _holder(lock)
    try:
        with pytest.raises(Busy, match=f"held by PID {p.pid}"):
            with hold(lock):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with hold(lock):  # the OS released the dead holder's lock: a rerun is not blocked
        assert lock.read_text().strip() == str(os.getpid())


def test_keys_are_fresh_and_a_server_with_a_key_answers_only_requests_that_carry_it(tmp_path):
    assert new_api_key() != new_api_key() and len(new_api_key()) >= 24
    labels = ["Physics", "Chemistry"]
    rows = [alpaca_row(build_instruction(labels), f"doc {i}", labels[i % 2]) for i in range(4)]
    key, port = new_api_key(), free_port()
    with VLLMServer([sys.executable, str(ROOT / "tests" / "fake_openai.py"), str(port), "good"], port,
                    tmp_path / "srv.log", 20, api_key=key) as url:
        with pytest.raises(ScoringError, match="401|Unauthorized|authentication"):
            score(url, "base", rows, labels, tmp_path / "nokey.jsonl", max_retries=0, progress=False)
        assert score(url, "base", rows, labels, tmp_path / "key.jsonl", progress=False, api_key=key)["scored"] == 4
    log = (tmp_path / "srv.log").read_text()
    assert key not in log and "--api-key" not in log  # in the server's environment, not its arguments


def test_the_data_step_waits_for_a_live_holder_instead_of_skipping(tmp_path, capsys):
    # two tasks of a Slurm array over one folder both start with the data step: the second waits
    from fewshot.locks import wait_for
    lock = tmp_path / ".data.lock"
    done = tmp_path / "holder_done"  # the holder writes it just before it lets go
    code = HOLDER.replace("time.sleep(60)", f"time.sleep(1.5); open({str(done)!r}, 'w').close()")
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)],
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    with wait_for(lock, "data"):
        assert done.exists()  # we got the lock only once the holder had finished
        assert lock.read_text().strip() == str(os.getpid())
    p.wait()
    assert f"data: waiting for PID {p.pid}" in capsys.readouterr().out


def test_a_run_scored_by_another_process_meanwhile_starts_no_server(write_config, monkeypatch, capsys):
    # a second array over the same folder planned this run before the first array finished scoring it
    import fewshot.eval as ev
    from fewshot.config import load_config
    from fewshot.runs import Run
    cfg = load_config(write_config())
    monkeypatch.setattr(ev, "is_scored", lambda cfg, run, h: True)
    monkeypatch.setattr(ev, "VLLMServer", lambda *a, **k: pytest.fail("a server was started"))
    monkeypatch.setattr(ev, "merge", lambda *a, **k: pytest.fail("an adapter was merged"))
    failed = {}
    ev._serve_group([(Run("llm_train_10", 10, 0, ROOT / "nowhere"), "h")], cfg, rows=[], labels=[],
                    split_sha="s", failed=failed, tokens={})
    assert not failed
    assert "llm_train_10: skipped, another process scored it meanwhile" in capsys.readouterr().out
