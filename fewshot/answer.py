"""The answer in words and tables, from the numbers the curve step wrote (labels_needed.json):
rows needed per method with how far to trust each, who is ahead at each measured size, the verdict,
what choosing rows saved, the plan's line, cost. Reads a dict; fits nothing, writes nothing."""
from __future__ import annotations

import re

from .curve import INTERVAL, base, selection_of, trusted
from .plan import words as plan_words
from .results import ICL_METHODS, LLM, METHOD_NAMES
from .selection import RANDOM, get as get_strategy


def name(m: str) -> str:
    """A curve key in words: 'TF-IDF + LogReg, typical rows'."""
    return get_strategy(selection_of(m)).display(METHOD_NAMES.get(base(m), base(m)))


def interval_words(r: dict) -> str:
    """'[low–high]' for a reader. An upper end past the farthest ratio the curve benchmark measured
    (or none: some bootstrap curves never get there) is no number to print: 'beyond N' says how far
    the benchmark reaches instead (a plateauing curve gave '[61–50000000001254]')."""
    lim, hi = r.get("benchmarked_to"), r.get("high")
    if hi is None or (lim and hi > lim):
        hi = f"beyond {lim}" if lim else "beyond the data"
    return f"[{r.get('low') or '?'}–{hi}]"


def _trust_words(r: dict) -> str:
    """Why an answer is or is not given: the benchmark's error at its ratio."""
    t = r.get("trust")
    if not t:
        top = max((float(x) for x in r.get("_ratios", [])), default=None)
        return "past every ratio benchmarked" + (f" ({top:g}x)" if top else "")
    if t.get("inside"):
        return "inside the measured sizes"
    return f"LCDB at {t['ratio']:g}x: 90% of {t['curves']} curves within {t['p90_abs']:.3f}"


def _sizes(ns: list[int]) -> str:
    return ", ".join(str(n) for n in ns)


def headline(res: dict) -> str:
    """The answer in short lines, generated from the numbers: rows needed per target with how far
    to trust each, crossovers, who is ahead at each measured size, cost. An answer whose
    benchmarked error is too large says "not enough data to say" instead of a number."""
    lines = []
    ratios = list(res.get("benchmark", {}).get("ratios", {}))
    acc = [dict(r, _ratios=ratios) for r in res["labels_needed"] if r["metric"] == "accuracy"]
    fell = {f["method"]: f["shape"] for f in res["fits"] if f["metric"] == "accuracy" and f.get("shape")}
    smallest = {f["method"]: min(f["sizes"]) for f in res["fits"]}
    seeds = res.get("seeds", {})
    for m in dict.fromkeys(r["method"] for r in acc):
        one_seed = " _(one training seed: intervals cover test-row noise only)_" if seeds.get(m) == 1 else ""
        if m in fell:
            lines.append(f"- **{name(m)}**: {fell[m]['reason']}: not a learning curve, no rows-needed figure "
                         f"(not enough data to say)")
            continue
        parts = []
        for r in (x for x in acc if x["method"] == m):
            if r.get("below_measured"):
                parts.append(f"{r['target']:.0%}: already at the smallest size measured ({smallest[m]} rows)")
            elif not r["reachable"]:
                parts.append(f"{r['target']:.0%}: not reached (fitted ceiling {r['ceiling']:.2f})")
            elif not r.get("enough_data"):
                parts.append(f"{r['target']:.0%}: not enough data to say (~{r['ratio']:.0f}x the largest size "
                             f"measured; {_trust_words(r)})")
            else:
                parts.append(f"{r['target']:.0%}: ~{r['rows']} rows {interval_words(r)}, {r['ratio']:.1f}x the "
                             f"largest measured ({_trust_words(r)})")
        unit = " (x = demonstrations shown)" if base(m) in ICL_METHODS else ""
        lines.append(f"- **{name(m)}**{unit}: " + "; ".join(parts) + one_seed)
    for f in res["fits"]:
        if f["metric"] == "accuracy" and f["status"] != "ok":
            lines.append(f"- **{name(f['method'])}**: no fit ({f['status']}): not enough data to say")
    for c in (c for c in res["crossovers"] if c["metric"] == "accuracy" and c["other"] not in ICL_METHODS):
        if c["other"] in fell:
            how = "falls as rows grow" if fell[c["other"]]["kind"] == "falls" else "dips as rows grow"
            lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: no crossover to give ({name(c['other'])} {how})")
            continue
        if c["kind"] == "from the start":
            txt = f"its curve is above from the smallest size ({c['range'][0]} rows)"
        elif c["kind"] == "never":
            txt = f"its curve never crosses above up to {c['range'][1]} rows"
        elif not trusted(c.get("trust")):
            txt = (f"curves cross ~{c['ratio']:.0f}x past the largest size measured: not enough data to say "
                   f"({_trust_words(dict(c, _ratios=ratios))})")
        else:
            txt = f"curves cross at ~{c['rows']} rows {interval_words(c)}"
        lines.append(f"- {name(c['llm'])} vs {name(c['other'])}: {txt}")
    lines += icl_words(res)
    lines += [x for x in verdict(res) if "In short" not in x]  # the verdict itself is on the first screen
    lines += savings_words(res)
    costs = [c for c in res["cost"] if c.get("target") is not None]
    inside = {(r["method"], r["target"]) for r in acc if r["reachable"] and not r["extrapolated"]}
    common = [t for t in res["targets"] if len({c["method"] for c in costs if (c["method"], t) in inside}) >= 2]
    if common:  # the highest target that at least two methods reach inside the measured range
        t = max(common)
        lines.append(f"- Compute to reach {t:.0%} accuracy (train + score, one run): " + "; ".join(
            f"{name(c['method'])} ~{_dur(c['seconds'])} {re.sub('[cg]pu', lambda m: m[0].upper(), c['device'])} ({c['rows']} rows)"
            for c in costs if c["target"] == t and (c["method"], t) in inside))
    return "\n".join(lines) if lines else "Not enough runs in objs/ to fit a learning curve."


def first_screen(res: dict) -> str:
    """What a person reads in ten seconds: the verdict once; the verdict with each method at its best
    measured rows only where that changes it, in one sentence; the plan with its next command."""
    lines = [x for x in verdict(res) if "In short" in x]
    best = res.get("best_selection") or {}
    if res.get("comparisons_best") and lines:
        again = [x for x in verdict({**res, "comparisons": res["comparisons_best"]}) if "In short" in x]
        said = again[0].split("**In short**: ", 1)[1] if again else None
        if said and said != lines[0].split("**In short**: ", 1)[1]:
            chosen = ", ".join(f"{name(m)}: {sel}" for m, sel in best.items() if m not in ICL_METHODS)
            lines.append(f"- **At each method's best measured rows** ({chosen}; picked on the "
                         f"{res.get('split', 'scored')} split, so optimistic) the verdict changes: {said}")
    if res.get("plan"):
        pl = res["plan"]
        sel = f", {pl['selection']} rows" if pl.get("selection", RANDOM) != RANDOM else ""
        lines.append("- " + plan_words(pl, METHOD_NAMES.get(pl["method"], pl["method"]) + sel))
    return "\n".join(lines)


def savings_words(res: dict) -> list[str]:
    """What choosing rows saved against random rows, at the plan's target."""
    lines = []
    t = (res.get("plan") or {}).get("target")
    for sv in (x for x in res.get("savings", []) if x["target"] == t):
        what = f"Choosing rows ({sv['selection']}) for {name(sv['method'])}, {t:.0%}"
        if sv["status"] in ("saves", "costs"):
            lo, hi = sv["low"], sv["high"]
            verb = "saves" if sv["status"] == "saves" else "costs"
            lines.append(f"- {what}: {verb} {abs(sv['saving']):.0%} [{min(abs(lo), abs(hi)):.0%}–{max(abs(lo), abs(hi)):.0%}] "
                         f"of the labels ({sv['rows_chosen']} rows against {sv['rows_random']} random)")
        elif sv["status"] == "no saving measurable":
            lines.append(f"- {what}: no saving measurable ({sv['rows_chosen']} rows against {sv['rows_random']} "
                         f"random; the interval holds 0)")
        else:
            lines.append(f"- {what}: {sv['status']}")
    return lines


def summary(res: dict) -> str:
    """The first screen and what choosing rows saved: what the curve step prints."""
    return "\n".join([first_screen(res), *savings_words(res)])


def icl_words(res: dict) -> list[str]:
    """What the in-context runs were shown, and where the token budget, not the subset, set k."""
    runs = sorted(res.get("icl", []), key=lambda r: (r["seed"] or 0, r["rows"]))
    if not runs:
        return []
    shown = ", ".join(f"{r['k']} of {r['rows']}" + "".join(f" (= {n})" for n in r.get("same_for") or [])
                      for r in runs)
    capped = [r["rows"] for r in runs if r.get("budget_sets_k")]
    same = [n for r in runs for n in r.get("same_for") or []]
    txt = f"- In-context: demonstrations shown per subset: {shown}"
    if capped:
        txt += f"; the {runs[0]['budget']}-token budget, not the subset, sets k at {_sizes(capped)} rows"
    if same:
        txt += f"; {_sizes(same)} rows gave the same demonstrations as a smaller subset and were scored once"
    return [txt]


def verdict(res: dict) -> list[str]:
    """Who is ahead at each size both were measured, by one rule: overlapping intervals are 'level'.
    Ends with the 'In short' sentence, generated from the same rule, never written by hand."""
    comps = res.get("comparisons", [])
    if not comps:
        return []
    pct = f"{res.get('interval', INTERVAL):.0%}"
    lines, groups = [], {}
    for o in dict.fromkeys(c["other"] for c in comps):
        cs = [c for c in comps if c["other"] == o]
        g = {v: [c["rows"] for c in cs if c["llm_is"] == v] for v in ("ahead", "level", "behind")}
        groups[o] = g
        seg = [f"{v} at {_sizes(g[v])} rows" for v in ("behind", "level", "ahead") if g[v]]
        lines.append(f"- {name(LLM)} vs {name(o)}, measured: " + "; ".join(seg))
    worse = [o for o, g in groups.items() if g["behind"] and not g["ahead"]]
    level = [o for o, g in groups.items() if not g["behind"] and not g["ahead"]]
    better = [o for o, g in groups.items() if g["ahead"] and not g["behind"]]
    mixed = [o for o, g in groups.items() if g["ahead"] and g["behind"]]
    said = []
    if worse:
        said.append(f"never ahead of {' and '.join(name(o) for o in worse)} at a measured size (behind at some, level "
                    f"at the rest): not shown to be worth it over them here")
    if level:
        said.append(f"level with {' and '.join(name(o) for o in level)} at every size measured")
    if better:
        said.append(f"ahead of {' and '.join(name(o) for o in better)} at some sizes and never behind")
    if mixed:
        said.append(f"ahead of {' and '.join(name(o) for o in mixed)} at some sizes and behind at others")
    seeds = res.get("seeds", {})
    note = (" One LLM training seed: its intervals cover test-row noise only." if seeds.get(LLM) == 1 else "")
    lines.append(f"- **In short**: {name(LLM)} is " + "; ".join(said) + f". (Level = {pct} intervals overlap, "
                 f"evaluation rows and training seeds resampled.){note}")
    return lines


def answers_table(res: dict, metric: str = "accuracy"):
    """Rows needed per method and target, in words a reader needs (the JSON keeps everything)."""
    import pandas as pd
    rows = []
    for r in (x for x in res["labels_needed"] if x["metric"] == metric):
        if r.get("below_measured"):
            answer = "met at the smallest size"
        elif not r["reachable"]:
            answer = f"not reached (ceiling {r['ceiling']:.2f})"
        elif not r.get("enough_data"):
            answer = "not enough data to say"
        else:
            answer = f"~{r['rows']}"
        t = r.get("trust")
        bench = ("inside the data" if t and t.get("inside") else f"{t['p90_abs']:.3f} ({t['ratio']:g}x)" if t
                 else "no benchmark")
        rows.append({"method": name(r["method"]), "target": f"{r['target']:.0%}", "rows needed": answer,
                     f"{res.get('interval', INTERVAL):.0%} interval": (interval_words(r) if r.get("enough_data")
                                                                      else ""),
                     "x largest measured": f"{r['ratio']:.1f}" if r.get("ratio") else "",
                     "benchmark: 90% of answers within": bench})
    return pd.DataFrame(rows)


def comparisons_table(res: dict):
    import pandas as pd
    return pd.DataFrame([{"rows": c["rows"], "vs": name(c["other"]), "LLM + LoRA": _acc(c["llm"], c["llm_interval"]),
                          "other": _acc(c["other_acc"], c["other_interval"]), "LLM is": c["llm_is"]}
                         for c in res.get("comparisons", [])])


def backtest_table(res: dict):
    """The backtest in words: each method refitted without its largest size, predicting it."""
    import pandas as pd
    return pd.DataFrame([{"method": name(b["method"]), "held out": f"{b['held_out']} rows",
                          "predicted": f"{b['predicted']:.3f}", "measured": f"{b['measured']:.3f}",
                          "error": f"{b['error']:+.3f}", "measured inside the interval": "yes" if b["covered"] else "no"}
                         for b in res["backtest"] if b["status"] == "ok" and b["metric"] == "accuracy"])


def cost_words_table(res: dict):
    """Compute for one run at the rows each target needs, only where the rows-needed answer stands
    (a TF-IDF answer of 205239 rows is not a cost to read)."""
    import pandas as pd
    answers = {(r["method"], r["target"]): r for r in res["labels_needed"] if r["metric"] == "accuracy"}
    rows = []
    for c in (c for c in res["cost"] if c.get("target") is not None):
        ok = answers.get((c["method"], c["target"]), {}).get("enough_data")
        rows.append({"method": name(c["method"]), "target": f"{c['target']:.0%}",
                     "rows needed": f"~{c['rows']}" if ok else "not enough data to say",
                     "one run, train + score": (_dur(c["seconds"]) if c["seconds"] >= 1 else "under 1 s") if ok else "",
                     "device": c["device"]})
    return pd.DataFrame(rows)


def _acc(x, ci) -> str:
    return f"{x:.3f} [{ci[0]:.3f}–{ci[1]:.3f}]"


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def table(res: dict) -> str:
    rows = [f"method               metric    target  rows    {res.get('interval', INTERVAL):.0%} interval    ratio  note"]
    for r in res["labels_needed"]:
        note = ("not reached: ceiling %.3f" % r["ceiling"] if not r["reachable"] else
                "" if r.get("enough_data") else "not enough data to say")
        ci = interval_words(r) if r["reachable"] else ""
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else ""
        rows.append(f"{r['method']:<20} {r['metric']:<9} {r['target']:<7} {str(r['rows'] or '-'):<7} {ci:<17} "
                    f"{ratio:<6} {note}")
    for f in res["fits"]:
        if f["status"] != "ok":
            rows.append(f"{f['method']:<20} {f['metric']:<9} no fit: {f['status']}")
    for c in res["crossovers"]:
        rows.append(f"crossover {c['metric']}: {c['llm']} vs {c['other']}: {c['kind']} {c['rows'] or ''} "
                    f"{interval_words(c)}")
    for b in res["backtest"]:
        if b["status"] == "ok":
            rows.append(f"backtest {b['method']} {b['metric']} at {b['held_out']}: predicted {b['predicted']:.3f}, "
                        f"measured {b['measured']:.3f}, error {b['error']:+.3f}, covered {b['covered']}")
        else:
            rows.append(f"backtest {b['method']} {b['metric']}: {b['status']}")
    rows += [line.lstrip("- ") for line in verdict(res)]
    return "\n".join(rows)
