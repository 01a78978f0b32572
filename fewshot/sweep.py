"""Choose the recipe on the valid split, never on test: `python -m fewshot sweep --config C` trains
and scores every recipe of the config's `sweep` section (each a set of overrides) at the sweep's
sizes, through the same train and eval steps as the study, into sweep/<recipe>/, and prints and
writes a table (sweep/sweep.json). Finished recipes are skipped on rerun, like any run."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .config import Config, override
from .errors import ConfigError
from .fileio import atomic_write_json, read_json
from .runs import out_paths, run_names


def best_by_mean_accuracy(rows: list[dict], key: str) -> str:
    """Every sweep's rule, fixed before it runs: the candidate (rows[i][key]) with the best mean accuracy."""
    means: dict[str, list[float]] = {}
    for r in rows:
        means.setdefault(r[key], []).append(r["accuracy"])
    return max(means, key=lambda k: sum(means[k]) / len(means[k]))


def recipe_config(cfg: Config, name: str) -> Config:
    sw = cfg.sweep
    base = Path(sw.out_dir) / name
    sets = [f"{k}={json.dumps(v)}" for k, v in (sw.recipes[name] or {}).items()]
    sets += [f"data.sizes={json.dumps(sw.sizes or cfg.data.sizes)}", f"eval.split={sw.split}",
             "eval.zero_shot=false", "eval.icl=false", f"train.out_dir={base / 'saves'}",
             f"train.log_dir={base / 'logs'}", f"eval.out_dir={base / 'objs'}",
             f"eval.merged_dir={base / 'merged'}"]
    return override(cfg, sets)


def run(cfg: Config) -> int:
    from .eval import run_all as eval_all
    from .train import run_all as train_all
    if not cfg.sweep.recipes:
        raise ConfigError(f"{cfg.path}: no 'sweep.recipes' to try")
    rows, rc = [], 0
    for name in cfg.sweep.recipes:
        c = recipe_config(cfg, name)
        t0 = time.time()
        rc |= train_all(c)
        rc |= eval_all(c)
        for run, size, seed, _ in run_names(c):
            p = out_paths(c, run)["json"]
            if not p.exists():
                continue
            m = read_json(p)["metrics"]
            done = read_json(Path(c.train.out_dir) / run / "done.json")
            rows.append({"recipe": name, "rows": size, "seed": seed, "epochs": done.get("epochs"),
                         "accuracy": round(m["accuracy"], 3), "macro_f1": round(m["macro_f1"], 3),
                         "acc_ci95": [round(x, 3) for x in m.get("accuracy_ci95", [])],
                         "train_s": done.get("wall_s"), "split": c.eval.split})
        print(f"[sweep] {name}: {time.time() - t0:.0f} s", flush=True)
    print(f"{'recipe':<28}{'rows':>6}{'epochs':>8}{'accuracy':>10}{'macro-F1':>10}{'train s':>9}")
    for r in rows:
        print(f"{r['recipe']:<28}{r['rows']:>6}{r['epochs']:>8}{r['accuracy']:>10}{r['macro_f1']:>10}{r['train_s']:>9}")
    best = best_by_mean_accuracy(rows, "recipe")
    print(f"[sweep] best mean accuracy on {cfg.sweep.split}: {best}")
    atomic_write_json(Path(cfg.sweep.out_dir) / "sweep.json", {"split": cfg.sweep.split, "rows": rows, "best": best,
                                                              "recipes": cfg.sweep.recipes})
    return rc


def head_scores(params: dict, train_emb, train_y, eval_emb, eval_y, labels: list[str]) -> dict:
    """Fit one SetFit head (LogisticRegression with these parameters) on embeddings, score it with
    the project's metrics: accuracy and macro-F1, rounded as the sweep tables show them."""
    from sklearn.linear_model import LogisticRegression

    from .metrics import compute
    pred = LogisticRegression(**params).fit(train_emb, train_y).predict(eval_emb)
    m = compute([str(p) for p in pred], eval_y, labels, n_boot=0)
    return {"accuracy": round(m["accuracy"], 3), "macro_f1": round(m["macro_f1"], 3)}


def setfit_heads(cfg: Config) -> int:
    """`python -m fewshot sweep setfit_head`: SetFit's head on the sweep split (valid). One SetFit body
    per sweep size (the first baseline seed), then every head of config.SETFIT_HEADS fitted on
    the same embeddings, so only the head differs. Writes sweep/setfit_heads.json."""
    from .baselines import setfit_model, split_texts
    from .config import SETFIT_HEADS
    from .manifest import load_manifest
    from .runs import eval_file_name, train_file_name
    sw, seed = cfg.sweep, cfg.baselines.seeds[0]
    labels = load_manifest(cfg)["labels"]
    vx, vy = split_texts(cfg, eval_file_name(sw.split))
    rows = []
    for n in sw.sizes or cfg.data.sizes:
        tx, ty = split_texts(cfg, train_file_name(n, seed, cfg.data))
        t0 = time.time()
        model = setfit_model(tx, ty, seed, cfg, head={})
        body_s = round(time.time() - t0, 1)
        etx, evx = model.encode(tx), model.encode(vx)
        for name, params in SETFIT_HEADS.items():
            rows.append({"head": name, "rows": n, "seed": seed, "split": sw.split, "body_s": body_s,
                         **head_scores(params, etx, ty, evx, vy, labels)})
            print(f"[sweep] setfit head {name:<14}{n:>6} rows  accuracy {rows[-1]['accuracy']:.3f}  "
                  f"macro-F1 {rows[-1]['macro_f1']:.3f}", flush=True)
    best = best_by_mean_accuracy(rows, "head")
    print(f"[sweep] best SetFit head by mean accuracy on {sw.split}: {best} (config: baselines.setfit_head)")
    atomic_write_json(Path(sw.out_dir) / "setfit_heads.json", {"split": sw.split, "rows": rows, "best": best,
                                                              "heads": SETFIT_HEADS, "data": cfg.data.out_dir})
    return 0


def encoder_recipe_row(cfg: Config, name: str, n: int, seed: int, valid: tuple[list, list], labels: list[str]) -> dict:
    """One recipe of sweep.encoder_recipes (its baselines.encoder_* overrides) trained on the n-row subset
    of `seed` and scored on the sweep split's rows `valid` (texts, labels): one row of the sweep's table."""
    from .baselines import encoder, split_texts
    from .metrics import compute
    from .runs import encoder_epochs, train_file_name
    sets = cfg.sweep.encoder_recipes[name] or {}
    bad = [k for k in sets if not k.startswith("baselines.encoder_")]
    if bad:
        raise ConfigError(f"{cfg.path}: sweep.encoder_recipes.{name}: {bad[0]!r} is not a baselines.encoder_* key")
    c = override(cfg, [f"{k}={json.dumps(v)}" for k, v in sets.items()])
    tx, ty = split_texts(cfg, train_file_name(n, seed, cfg.data))
    t0 = time.time()
    m = compute(encoder(tx, ty, valid[0], seed, c), valid[1], labels, n_boot=0)
    return {"recipe": name, "rows": n, "seed": seed, "split": cfg.sweep.split, "epochs": encoder_epochs(c.baselines, n),
            "accuracy": round(m["accuracy"], 3), "macro_f1": round(m["macro_f1"], 3),
            "seconds": round(time.time() - t0, 1)}


def encoder_recipes(cfg: Config) -> int:
    """`python -m fewshot sweep encoder`: the encoder fine-tune's recipes (sweep.encoder_recipes, each
    a set of baselines.* overrides) trained at the sweep sizes (first baseline seed) and scored on the
    sweep split (valid), so the encoder is tuned as the LoRA recipe and SetFit's head were. Writes
    sweep/encoder_recipes.json; the best mean accuracy goes into the config by hand."""
    from .baselines import split_texts
    from .manifest import load_manifest
    from .runs import eval_file_name
    sw, seed = cfg.sweep, cfg.baselines.seeds[0]
    if not sw.encoder_recipes:
        raise ConfigError(f"{cfg.path}: no 'sweep.encoder_recipes' to try")
    labels = load_manifest(cfg)["labels"]
    valid = split_texts(cfg, eval_file_name(sw.split))
    rows = []
    for name in sw.encoder_recipes:
        for n in sw.sizes or cfg.data.sizes:
            rows.append(encoder_recipe_row(cfg, name, n, seed, valid, labels))
            print(f"[sweep] encoder {name:<18}{n:>6} rows  {rows[-1]['epochs']:>6} epochs  accuracy "
                  f"{rows[-1]['accuracy']:.3f}  macro-F1 {rows[-1]['macro_f1']:.3f}  ({rows[-1]['seconds']} s)", flush=True)
    best = best_by_mean_accuracy(rows, "recipe")
    print(f"[sweep] best encoder recipe by mean accuracy on {sw.split}: {best} {sw.encoder_recipes[best]}")
    atomic_write_json(Path(sw.out_dir) / "encoder_recipes.json", {"split": sw.split, "rows": rows, "best": best,
                                                                 "recipes": sw.encoder_recipes})
    return 0

