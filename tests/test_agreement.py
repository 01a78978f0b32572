"""Two scorings of one run: a near-tie flipped by batching passes, a real difference fails (issue 45)."""
import json
import subprocess
import sys
from pathlib import Path

from langchain_core.messages import AIMessage

from fewshot.agreement import NEAR_TIE, compare, margin, parting
from fewshot.client import token_logprobs

ROOT = Path(__file__).resolve().parent.parent


def row(raw, pred, lps=None):
    r = {"raw": raw, "pred": pred}
    if lps is not None:
        r["logprobs"] = lps
    return r


# "math" and "mail" within 0.02 nats in both scorings: the batch decides which comes out
ALONE = [["ma", -0.1, [["ma", -0.1], ["mo", -4.0]]], ["th", -0.70, [["th", -0.70], ["il", -0.72]]]]
BATCHED = [["ma", -0.1003, [["ma", -0.1003], ["mo", -4.0]]], ["il", -0.69, [["il", -0.69], ["th", -0.71]]]]
# the same flip, but the other token 3 nats behind: no batching explains it
FAR = [["ma", -0.1, [["ma", -0.1], ["mo", -4.0]]], ["il", -0.05, [["il", -0.05], ["th", -3.05]]]]


def test_parting_and_margin_read_the_first_token_that_differs():
    assert parting(ALONE, BATCHED) == 1 and parting(ALONE, ALONE) is None
    assert abs(margin(ALONE, BATCHED) - 0.02) < 1e-9
    assert abs(margin(ALONE, FAR) - 3.0) < 1e-9
    assert margin(ALONE, None) is None
    # the other token not among the alternatives the server sent: the margin cannot be told
    assert margin(ALONE, [ALONE[0], ["xx", -0.01, [["xx", -0.01]]]]) is None


def test_near_tie_flip_passes_and_free_text_is_counted_not_failed():
    ref = {0: row("math", "math", ALONE), 1: row("a game engine", None), 2: row("mail", "mail")}
    other = {0: row("mail", "mail", BATCHED), 1: row("a game.", None), 2: row("mail", "mail")}
    c = compare(ref, other)
    assert c["same"] and c["text_differ"] == 2 and len(c["label_flips"]) == 1 and not c["real"]
    assert c["label_flips"][0]["near_tie"] and c["label_flips"][0]["margin"] <= NEAR_TIE
    assert c["noise"] > 0  # the shared first token moved by 0.0003


def test_real_differences_fail():
    ref = {0: row("math", "math", ALONE), 1: row("mail", "mail")}
    assert not compare(ref, {0: row("mail", "mail", FAR), 1: row("mail", "mail")})["same"]  # wide margin
    assert not compare(ref, {0: row("math", "math", ALONE), 1: row("math", "math")})["same"]  # no log-probs
    assert not compare(ref, {0: row("math", "math", ALONE)})["same"]  # a row unanswered
    assert compare(ref, dict(ref))["same"]


def test_client_keeps_the_servers_log_probabilities():
    meta = {"logprobs": {"content": [{"token": "ma", "logprob": -0.123456, "bytes": None,
                                      "top_logprobs": [{"token": "ma", "logprob": -0.123456, "bytes": None},
                                                       {"token": "mo", "logprob": -2.5, "bytes": None}]}]}}
    assert token_logprobs(AIMessage(content="ma", response_metadata=meta)) == [["ma", -0.1235, [["ma", -0.1235],
                                                                                                ["mo", -2.5]]]]
    assert token_logprobs(AIMessage(content="ma")) is None


def _study(root: Path, answers: list[dict], accuracy: float) -> None:
    """The files slurm_compare reads, for one LLM run and one baseline: what a study leaves."""
    run = "llm_train_16_s0"
    (root / "saves" / run).mkdir(parents=True)
    (root / "saves" / run / "done.json").write_text("{}")
    (root / "objs" / run).mkdir(parents=True)
    (root / "objs" / run / "predictions.jsonl").write_text("".join(json.dumps({"i": i, **a}) + "\n"
                                                                   for i, a in enumerate(answers)))
    (root / "objs" / "tfidf_16_s0.json").write_text(json.dumps({"metrics": {"accuracy": accuracy}}))
    (root / "logs").mkdir()
    (root / "report").mkdir()
    for f in ("report.html", "label_plan.json"):
        (root / "report" / f).write_text("{}")


def _check(tmp_path: Path, sharded_answers: list[dict]) -> subprocess.CompletedProcess:
    ref, sh = tmp_path / "ref", tmp_path / "sharded"
    _study(ref, [row("math", "math", ALONE), row("mail", "mail")], 0.5)
    _study(sh, sharded_answers, 0.5)
    (ref / "logs" / "slurm-ref-1.out").write_text("[eval] llm_train_16_s0: accuracy 0.5\n")
    (sh / "logs" / "slurm-fewshot-runs-2_0.out").write_text(
        "[train] llm_train_16_s0: done in 3 s\n[eval] llm_train_16_s0: accuracy 0.5\n")
    return subprocess.run([sys.executable, str(ROOT / "bench" / "slurm_compare.py"), str(ref), str(sh)],
                          capture_output=True, text=True)


def test_slurm_check_passes_a_near_tie_and_fails_a_planted_difference(tmp_path):
    ok = _check(tmp_path / "a", [row("mail", "mail", BATCHED), row("mail", "mail")])
    assert ok.returncode == 0, ok.stdout
    assert "scored labels differing: 1 (row 0 math/mail margin 0.020)" in ok.stdout
    bad = _check(tmp_path / "b", [row("mail", "mail", FAR), row("mail", "mail")])
    assert bad.returncode == 1 and "1 beyond a near-tie" in bad.stdout and "SOME CHECKS FAILED" in bad.stdout
