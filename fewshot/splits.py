"""The splits a study scores on: documents made plain data (the model's control tokens broken), duplicate
groups found and kept whole on one side (or dropped, or kept and counted), and the valid/test splits a
source lacks carved out of train, seeded and stratified."""
from __future__ import annotations

from collections import Counter

from .audit import EXAMPLES, duplicate_groups
from .config import Config, DataConfig
from .errors import DataError
from .selection.random_order import prefix_order
from .tokens import neutralize

def neutralize_rows(splits: dict[str, list[dict]], controls: list[str]) -> dict:
    """Control strings inside documents made plain text, in place (tokens.neutralize); what was changed."""
    changed: dict[str, list[str]] = {}
    for split, rows in splits.items():
        for r in rows:
            text = neutralize(r["text"], controls)
            if text != r["text"]:
                r["text"] = text
                changed.setdefault(split, []).append(r["_src"])
    return {"documents": sum(len(v) for v in changed.values()), "by_split": {k: len(v) for k, v in changed.items()},
            "examples": [x for v in changed.values() for x in v][:EXAMPLES], "tokens": controls}


def dedupe(cfg: Config, splits: dict[str, list[dict]], origin: dict[str, str]):
    """Duplicate groups over every row (exact; near with the full audit), then data.duplicates: group
    (made splits keep groups whole; given splits sharing a group fail naming the rows), drop (made
    splits as group; given splits lose a shared group's rows after its earliest split of train, valid,
    test) or keep. Returns (splits, embeddings per split or None, findings)."""
    d = cfg.data
    given = [s for s in ("train", "valid", "test") if s in splits]
    rows = [r for s in given for r in splits[s]]
    split_of = [s for s in given for _ in splits[s]]
    emb_all = None
    if d.audit == "full":  # one cached embedding per given split: the selection step reads the same vectors
        import numpy as np
        from .embeddings import embed
        emb_all = np.vstack([embed(cfg, [r["text"] for r in splits[s]]) for s in given])
    gid, found = duplicate_groups([r["text"] for r in rows], emb_all, d.near_duplicate_cosine)
    for i, r in enumerate(rows):
        r["_g"], r["_e"] = gid[i], i
    members: dict[int, list[int]] = {}
    for i, g in enumerate(gid):
        members.setdefault(g, []).append(i)
    multi = {g: m for g, m in members.items() if len(m) > 1}
    across = {g: m for g, m in multi.items() if len({split_of[i] for i in m}) > 1}
    dropped = []
    def shown(m):  # one member per split (the rows that make a group straddle), or its first three
        ss = [s for s in given if s in {split_of[i] for i in m}]
        pick = [next(i for i in m if split_of[i] == s) for s in ss] if len(ss) > 1 else m[:3]
        return " = ".join(rows[i]["_src"] for i in pick)
    if across and d.duplicates == "group":
        ex = "; ".join(shown(m) for m in list(across.values())[:EXAMPLES])
        raise DataError(f"{len(across)} duplicate group(s) (exact, or cosine >= {d.near_duplicate_cosine}) "
                        f"straddle the given splits, so test rows are also train rows: {ex}; set data.duplicates: "
                        f"drop (keeps the train copy) or keep (counts them in data/audit.json)")
    if d.duplicates == "drop":  # a straddling group keeps its rows in the earliest split (train, valid, test)
        first = {g: min(given.index(split_of[i]) for i in m) for g, m in across.items()}
        gone = {i for g, m in across.items() for i in m if given.index(split_of[i]) > first[g]}
        dropped = [rows[i]["_src"] for i in sorted(gone)]
        splits = {s: [r for r in splits[s] if r["_e"] not in gone] for s in given}
    made = [s for s in ("valid", "test") if s not in splits]
    splits = make_missing_splits(splits, d, origin["train"],
                                 [r["_g"] for r in splits["train"]] if d.duplicates != "keep" else None)
    final = {r["_e"]: s for s, rs in splits.items() for r in rs}
    straddle = sum(1 for m in multi.values() if len({final[i] for i in m if i in final}) > 1)
    for m in multi.values():  # rows outside train with a duplicate in train: what would inflate scores
        if any(final.get(i) == "train" for i in m):
            for i in m:
                rows[i]["_x"] = final.get(i) not in (None, "train")
    exact_rows = {i for pair in found["exact_pairs"] for i in pair}
    near_rows = {i for pair in found["near_pairs"] for i in pair[:2]} - exact_rows
    dups = {"exact_rows": len(exact_rows), "near_rows": len(near_rows), "groups": len(multi),
            "near_duplicate_cosine": d.near_duplicate_cosine if emb_all is not None else None,
            "action": d.duplicates, "grouped": len(multi) if d.duplicates != "keep" and made else 0,
            "dropped": len(dropped), "dropped_rows": dropped[:EXAMPLES], "straddling_groups": straddle,
            "examples": [shown(m).split(" = ") for m in (list(across.values()) + list(multi.values()))[:EXAMPLES]],
            "near_examples": [[rows[i]["_src"], rows[j]["_src"], c] for i, j, c in found["near_pairs"][:EXAMPLES]]}
    emb = None if emb_all is None else {s: emb_all[[r["_e"] for r in splits[s]]] for s in splits}
    return splits, emb, dups


def make_missing_splits(splits: dict[str, list[dict]], cfg: DataConfig, where: str,
                        groups: list[int] | None = None) -> dict[str, list[dict]]:
    """Carve valid/test out of train, seeded and stratified, where the source lacks them. With `groups`
    (a duplicate-group id per train row), a group goes whole to the split its first row lands in."""
    missing = [s for s in ("valid", "test") if s not in splits]
    if not missing:
        return splits
    train = splits["train"]
    if cfg.stratify:
        need = 1 + len(missing)
        for lab, c in sorted(Counter(r["label"] for r in train).items()):
            if c < need:
                raise DataError(f"{where}: label '{lab}' has {c} row(s), too few to stratify the "
                                f"{'/'.join(missing)} split(s) (needs {need}); add rows or set data.stratify=false")
    order = prefix_order([r["label"] for r in train], cfg.split_seed + 7919, cfg.stratify)
    out = dict(splits)
    # stride through the stratified order so each made split is itself stratified
    want = {s: max(1, round((cfg.valid_fraction if s == "valid" else cfg.test_fraction) * len(train))) for s in missing}
    groups = groups if groups is not None else list(range(len(train)))
    taken: dict[str, list[int]] = {s: [] for s in [*missing, "train"]}
    home: dict[int, str] = {}
    size = Counter(groups)
    cur = 0
    for i in order:
        if groups[i] not in home:  # a group larger than what the split still takes stays in train
            fits = cur < len(missing) and size[groups[i]] <= want[missing[cur]] - len(taken[missing[cur]])
            home[groups[i]] = missing[cur] if fits else "train"
        taken[home[groups[i]]].append(i)
        while cur < len(missing) and len(taken[missing[cur]]) >= want[missing[cur]]:
            cur += 1
    for s in missing:
        if not taken[s]:
            raise DataError(f"{where}: no {s} rows left once duplicate groups are kept whole (the largest group has "
                            f"{max(size.values())} of {len(train)} rows); check the data for templated text, or set "
                            f"data.duplicates: keep")
    for s, idx in taken.items():
        out[s] = [train[i] for i in idx]
    return out
