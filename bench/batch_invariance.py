"""Do the base model's greedy answers depend on which requests share a batch? One CPU vLLM server, as the
eval step starts it for the base model (configs/slurm_check.yaml, 100 test rows), and the zero-shot prompts
sent four ways: one at a time (twice), all in flight at once (64, the study's eval.concurrency), and all in
flight again in reverse order. Free answers and label-constrained answers each; rows whose answer differs
between two ways are counted, and each flipped label's margin (`fewshot.agreement`): how near a tie the
token where the answers part was, in the server's own log-probabilities, beside the largest change of a
shared token's log-probability (the noise batching adds). A fresh server per way, so no way reads another's
prefix cache.

    .venv/bin/python bench/batch_invariance.py   ->  bench/results/batch_invariance_<cpu kind>.json
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fewshot.agreement import NEAR_TIE, compare  # noqa: E402
from fewshot.client import score  # noqa: E402
from fewshot.config import load_config  # noqa: E402
from fewshot.data import build  # noqa: E402
from fewshot.devices import cpu_kind, cpu_serving_dtype  # noqa: E402
from fewshot.fileio import atomic_write_json, read_json, read_jsonl  # noqa: E402
from fewshot.models import model_path  # noqa: E402
from fewshot.serve import VLLMServer, free_port, new_api_key, vllm_command  # noqa: E402

WAYS = {"alone_1": (1, False), "alone_2": (1, False), "batched": (64, False), "batched_reversed": (64, True)}


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="batch_inv_"))
    cfg = load_config("configs/slurm_check.yaml", [f"data.out_dir={tmp / 'data'}"])
    man = build(cfg)
    rows = read_json(tmp / "data" / "llm_test.json")
    labels = man["labels"]
    out = {"cpu": cpu_kind(), "dtype": cpu_serving_dtype(cfg), "rows": len(rows), "ways": {}}
    for way, (conc, reverse) in WAYS.items():
        port = free_port()
        cmd = vllm_command(model_path(cfg), cfg.model.served_name, port, None, cfg.train.lora_rank,
                           cfg.eval.server_args, cpu_dtype=cpu_serving_dtype(cfg), max_model_len=cfg.train.cutoff_len)
        with VLLMServer(cmd, port, tmp / f"{way}.log", api_key=(key := new_api_key())) as url:
            got = {}
            for constrained in (False, True):
                pred = tmp / f"{way}_{constrained}.jsonl"
                order = list(range(len(rows)))[::-1] if reverse else list(range(len(rows)))
                t0 = time.time()
                # the client sends pending rows in row order; reversed: the rows given in reverse
                score(url, cfg.model.served_name, [rows[i] for i in order], labels, pred, concurrency=conc,
                      constrained=constrained, max_tokens=cfg.eval.max_tokens, progress=False, api_key=key)
                ans = {order[r["i"]]: r for r in read_jsonl(pred)}
                got["constrained" if constrained else "free"] = {"answers": ans, "seconds": round(time.time() - t0, 1)}
            out["ways"][way] = got
    pairs = [("alone_1", "alone_2"), ("alone_1", "batched"), ("batched", "batched_reversed")]
    out["differ"], out["near_tie"] = {}, NEAR_TIE
    for a, b in pairs:
        for kind in ("free", "constrained"):
            x, y = out["ways"][a][kind]["answers"], out["ways"][b][kind]["answers"]
            raw = [i for i in x if x[i]["raw"] != y[i]["raw"]]
            c = compare(x, y)
            out["differ"][f"{a} vs {b}, {kind}"] = {"text": len(raw), "label": len(c["label_flips"]), "rows": raw[:10],
                                                    "flips": c["label_flips"], "noise": c["noise"], "same": c["same"]}
            margins = ", ".join(f"row {f['row']} {f['ref']}/{f['other']} {f['margin']}" for f in c["label_flips"])
            print(f"{a} vs {b}, {kind}: {len(raw)} of {len(x)} answers differ as text, {len(c['label_flips'])} as the "
                  f"label scored{f' (margins: {margins})' if margins else ''}; shared-token noise {c['noise']}")
    for w in out["ways"].values():  # the answers without their log-probabilities (the comparisons hold what matters)
        for k in w.values():
            k["answers"] = {str(i): [v["raw"], v["pred"]] for i, v in sorted(k["answers"].items())}
    res = Path("bench/results") / f"batch_invariance_{out['cpu']}.json"
    atomic_write_json(res, out)
    print(f"[batch-invariance] {res}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
