"""In-context learning from the same rows the LoRA runs train on: for each (size, seed), the base
model is shown the n-row training subset as earlier chat turns (user: the document as in training,
assistant: its label) before each row to classify. Every row of a run gets the same demonstrations
in the same order, so the server's prefix cache computes them once per run.

When the n rows do not fit the token budget (eval.icl_max_tokens; by default the served context
less the longest evaluation prompt and the answer), a deterministic subset that fits is taken
class by class, round robin, so that as many classes as possible are shown first.

Each subset is scored label-constrained, and free-form too unless eval.icl_free is off (like the
zero-shot pair), so the curve shows what the demonstrations teach beyond the answer format. A point is one measurement: when the
budget, not the subset, sets k and two subsets yield the very same demonstrations, they are scored
once, under the smaller subset's name, which records the other sizes in `same_for`."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import Config
from .manifest import load_manifest
from .models import config_json
from .errors import FewshotError
from .prompt import chat_messages
from .runs import Run, eval_file_name, icl_answer_modes, icl_name, icl_sizes, seeds_for, selections_for, train_file_name
from .tokens import prompt_len, tokenizer


def model_context(cfg: Config) -> int:
    """The model's own context length (config.json), 2048 where it does not say."""
    c = config_json(cfg.model.name_or_path)
    for k in ("max_position_embeddings", "seq_length", "n_positions"):
        if isinstance(c.get(k), int):
            return c[k]
    return 2048


def demo_costs(tok, demos: list[dict], probe: dict) -> list[int]:
    """Tokens each demonstration adds to a prompt (its user turn and its answer turn)."""
    base = prompt_len(tok, chat_messages(probe))
    return [prompt_len(tok, chat_messages(probe, [d])) - base for d in demos]


def choose_demos(demos: list[dict], costs: list[int], budget: int) -> list[int]:
    """Indices (in subset order) of the demonstrations to show: all when they fit the budget, else a
    round robin over classes (label order of first appearance), each class's rows in subset order,
    adding a row only while the total stays within the budget."""
    if sum(costs) <= budget:
        return list(range(len(demos)))
    queues: dict[str, list[int]] = {}
    for i, d in enumerate(demos):
        queues.setdefault(d["output"], []).append(i)
    chosen, total, progress = [], 0, True
    while progress:
        progress = False
        for lab in list(queues):
            q = queues[lab]
            while q and total + costs[q[0]] > budget:  # too long for what is left: try the class's next
                q.pop(0)
            if q:
                i = q.pop(0)
                chosen.append(i)
                total += costs[i]
                progress = True
    return sorted(chosen)


def icl_runs(cfg: Config) -> list:
    """A label-constrained Run (and a free-form one, eval.icl_free) per distinct demonstration set of
    the (size, seed)s scored in context (eval.icl_sizes)."""
    manifest = load_manifest(cfg)
    split = eval_file_name(cfg.eval.split)
    tokens = manifest["files"][split].get("tokens", {})
    max_prompt = tokens.get("max_prompt")
    if not max_prompt:
        raise FewshotError(f"{cfg.data.out_dir}/manifest.json has no token counts: rerun the data step")
    budget = cfg.eval.icl_max_tokens
    if budget is None:
        budget = model_context(cfg) - max_prompt - cfg.eval.max_tokens
    if budget <= 0:
        raise FewshotError(f"eval.icl: no room for demonstrations: the longest {split} prompt has {max_prompt} "
                           f"tokens of the model's {model_context(cfg)}")
    tok = tokenizer(cfg.model.name_or_path)
    data = Path(cfg.data.out_dir)
    probe = json.loads((data / f"{split}.json").read_text(encoding="utf-8"))[0]
    runs, seen = [], {}
    for sel, seed in [(sel, s) for sel in selections_for(cfg, "llm_icl") for s in seeds_for(cfg, "llm_icl", sel)]:
        for n in icl_sizes(cfg):
            fname = train_file_name(n, seed, cfg.data, sel)
            subset = json.loads((data / f"{fname}.json").read_text(encoding="utf-8"))
            costs = demo_costs(tok, subset, probe)
            idx = choose_demos(subset, costs, budget)
            demos = [subset[i] for i in idx]
            same = hashlib.sha256(json.dumps(demos, sort_keys=True).encode()).hexdigest()[:16]
            if same in seen:  # the same demonstrations as a smaller subset: the same measurement
                seen[same].icl["same_for"].append(n)
                continue
            used = prompt_len(tok, chat_messages(probe, demos)) - prompt_len(tok, chat_messages(probe))
            key = hashlib.sha256(json.dumps([manifest["files"][fname]["sha256"], idx]).encode()).hexdigest()[:16]
            info = {"k": len(idx), "of": n, "tokens": used, "budget": budget, "rows": idx,
                    "budget_sets_k": len(idx) < n, "same_for": [],
                    "classes": len({d["output"] for d in demos}), "train_file": f"{fname}.json"}
            pair = [Run(icl_name(n, seed, cfg.data, c, sel), n, seed, None, key, "icl", c, demos, info, sel)
                    for c in icl_answer_modes(cfg)]
            seen[same] = pair[0]  # the pair shares one info dict
            runs += pair
    return runs
