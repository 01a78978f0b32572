"""Do two scorings of one run give the same answers? Greedy decoding in bf16 is not batch-invariant
(docs/slurm.md): which requests share a step moves the sums, and where two tokens nearly tie, the
answer can flip. So "the same" here is: the scored label equal on every row, or, where it differs, a
near-tie: at the first token where the two answers part, each scoring put its own token and the
other's within `tol` nats of each other. Free text that parts without changing the label is counted,
not failed. A flip whose margin is larger, or unknown (no log-probabilities, or the other token not
among the alternatives the server sent), is a real difference."""
from __future__ import annotations

from pathlib import Path

from .fileio import read_jsonl

NEAR_TIE = 0.25  # nats; bench/results/batch_invariance_*.json holds the measured flips and noise


def answers(objs_dir: str | Path, run: str) -> dict[int, dict]:
    """row -> answer of one scored run (OBJS/RUN/predictions.jsonl), as `compare` takes them; a missing
    file or a row answered twice is an error."""
    p = Path(objs_dir) / run / "predictions.jsonl"
    if not p.exists():
        raise SystemExit(f"{p}: not found")
    rows = read_jsonl(p)
    out = {r["i"]: r for r in rows}
    if len(out) != len(rows):
        raise SystemExit(f"{p}: a row was answered twice")
    return out


def parting(a: list, b: list) -> int | None:
    """The first position where two answers' tokens differ (None: the same tokens)."""
    for k, (x, y) in enumerate(zip(a, b)):
        if x[0] != y[0]:
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


def _gap(own: list, k: int, other_token: str) -> float | None:
    if k >= len(own):
        return None
    tok, lp, alts = own[k]
    seen = dict((t, v) for t, v in alts)
    seen[tok] = lp
    return abs(lp - seen[other_token]) if other_token in seen else None


def margin(a: list | None, b: list | None) -> float | None:
    """How near a tie the parting token was: the larger of the two scorings' gaps between the two
    tokens; None where either scoring cannot tell."""
    if not a or not b:
        return None
    k = parting(a, b)
    if k is None or k >= len(a) or k >= len(b):  # one answer is the other's start: no token to weigh
        return None
    ga, gb = _gap(a, k, b[k][0]), _gap(b, k, a[k][0])
    return None if ga is None or gb is None else max(ga, gb)


def noise(a: list | None, b: list | None) -> float:
    """The largest change in one token's log-probability over the tokens both answers share before
    they part: how much the batch moved the numbers where it moved no answer."""
    if not a or not b:
        return 0.0
    k = parting(a, b)
    k = min(len(a), len(b)) if k is None else k
    return max((abs(x[1] - y[1]) for x, y in zip(a[:k], b[:k])), default=0.0)


def compare(ref: dict[int, dict], other: dict[int, dict], tol: float = NEAR_TIE) -> dict:
    """ref/other: row -> a predictions.jsonl row ({"raw", "pred", "logprobs"?}). `same` is True when both
    answered the same rows and every label that differs is a near-tie."""
    flips, text = [], 0
    shared = sorted(set(ref) & set(other))
    for i in shared:
        x, y = ref[i], other[i]
        text += x["raw"] != y["raw"]
        if x["pred"] != y["pred"]:
            m = margin(x.get("logprobs"), y.get("logprobs"))
            flips.append({"row": i, "ref": x["pred"], "other": y["pred"],
                          "margin": None if m is None else round(m, 4), "near_tie": m is not None and m <= tol})
    real = [f for f in flips if not f["near_tie"]]
    return {"rows": len(shared), "missing": sorted(set(ref) ^ set(other))[:10], "text_differ": text,
            "label_flips": flips, "real": real,
            "noise": round(max((noise(ref[i].get("logprobs"), other[i].get("logprobs")) for i in shared),
                               default=0.0), 4),
            "same": not real and set(ref) == set(other)}


def words(run: str, c: dict) -> str:
    """One line for a check: what differs, and each flip's margin."""
    flips = ", ".join(f"row {f['row']} {f['ref']}/{f['other']} margin "
                      f"{'unknown' if f['margin'] is None else format(f['margin'], '.3f')}" for f in c["label_flips"][:6])
    return (f"{run}: {c['rows']} answers; scored labels differing: {len(c['label_flips'])}"
            f"{f' ({flips})' if flips else ''}, {len(c['real'])} beyond a near-tie of {NEAR_TIE:g} nats; "
            f"{c['text_differ']} free texts differ; largest log-probability change on shared tokens {c['noise']:.3f}"
            + (f"; rows answered by one side only: {c['missing']}" if c["missing"] else ""))
