"""Why does SetFit fall as rows grow (paper data, test: 0.826 / 0.813 / 0.764 at 100 / 500 / 1000)?
One size on the valid split, the chosen head each time: the MiniLM body left as it is (no
contrastive step) and SetFit in fp32; with --bf16 also SetFit in bf16 autocast (what the baseline
ran on a CPU with native bf16 until this check: 0.764 on test at 1000 rows).
    FEWSHOT_SET=... .venv/bin/python bench/setfit_check.py --config configs/paper.yaml --rows 1000"""
import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot import baselines  # noqa: E402
from fewshot.config import SETFIT_HEADS, load_config  # noqa: E402
from fewshot.manifest import load_manifest  # noqa: E402
from fewshot.runs import eval_file_name, train_file_name  # noqa: E402
from fewshot.sweep import head_scores  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--rows", type=int, required=True)
ap.add_argument("--bf16", action="store_true")
a = ap.parse_args()
cfg = load_config(a.config)
seed = cfg.baselines.seeds[0]
labels = load_manifest(cfg)["labels"]
tx, ty = baselines.split_texts(cfg, train_file_name(a.rows, seed, cfg.data))
vx, vy = baselines.split_texts(cfg, eval_file_name("valid"))
head = SETFIT_HEADS[cfg.baselines.setfit_head]
out = []


def score(name, model, secs):
    out.append({"setting": name, "rows": a.rows, "split": "valid", "seconds": round(secs, 1),
                **head_scores(head, model.encode(tx), ty, model.encode(vx), vy, labels)})
    print(out[-1], flush=True)


from setfit import SetFitModel  # noqa: E402
score("body as shipped (no contrastive step)", SetFitModel.from_pretrained(baselines.encoder_path(cfg)), 0)
for bf16 in ([False, True] if a.bf16 else [False]):
    t0 = time.time()
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        m = baselines.setfit_model(tx, ty, seed, cfg, head)
    score(f"SetFit, {'bf16 autocast' if bf16 else 'fp32'}", m, time.time() - t0)
Path("bench/results").mkdir(exist_ok=True)
Path(f"bench/results/setfit_check_{a.rows}_valid.json").write_text(json.dumps(out, indent=1) + "\n")
