"""The data step: load a labelled text set (built-in, hub, or local files) with `datasets`,
make the splits it lacks, draw nested seeded few-shot subsets, and write Alpaca files plus the
`dataset_info.json` LLaMA-Factory reads and a manifest that pins every file by sha256."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import synthetic_data
from .config import Config, DataConfig
from .errors import DataError
from .audit import EXAMPLES, duplicate_groups, report as audit_report, summary_line
from .file_checks import check_csv, check_encoding
from .fileio import atomic_write_json, atomic_write_text, dumps_json, sha256_file
from .models import check_model_path
from .prompt import ALPACA_COLUMNS, alpaca_row, build_instruction
from . import rounds
from .runs import RANDOM, eval_file_name, sizes_for, subset_seeds, train_file_name
from .selection import LabelOracle, get as get_strategy, order as selection_order
from .selection.random_order import prefix_order
from .manifest import AUDIT, TRAIN_ROWS
from .tokens import control_strings, neutralize

LOCAL_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test"}


# ---------------------------------------------------------------- loading

def _is_local(source: str) -> bool:
    p = Path(source)
    return p.exists() or p.suffix.lower() in LOCAL_FORMATS or "/" in source and source.startswith((".", "/", "~"))


def _local_files(source: str) -> dict[str, Path]:
    """split name -> file for a local file (one 'train' split) or a folder of split files."""
    p = Path(source).expanduser()
    if not p.exists():
        raise DataError(f"data file not found: {p} (data.source)")
    if p.is_file():
        if p.suffix.lower() not in LOCAL_FORMATS:
            raise DataError(f"{p}: unsupported format '{p.suffix}' (use .csv, .json, .jsonl or .parquet)")
        return {"train": p}
    found: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        split = SPLIT_ALIASES.get(f.stem.lower())
        if split and f.suffix.lower() in LOCAL_FORMATS:
            if split in found:
                raise DataError(f"{p}: two files for split '{split}': {found[split].name}, {f.name}")
            found[split] = f
    if "train" not in found:
        raise DataError(f"{p}: no train file (expected train.csv/.json/.jsonl/.parquet in the folder)")
    return found


def _load_local(cfg: DataConfig) -> dict:
    import datasets
    out = {}
    for split, f in _local_files(cfg.source).items():
        kind, opts = LOCAL_FORMATS[f.suffix.lower()], {}
        if kind != "parquet":  # text formats: the encoding, and for CSV the separator, checked first
            opts["encoding"] = check_encoding(f, cfg.encoding)
        if kind == "csv":
            check_csv(f, opts["encoding"], cfg.delimiter, [cfg.text_field, cfg.label_field])
            opts["sep"] = cfg.delimiter or ","
        try:
            ds = datasets.load_dataset(kind, data_files=str(f), split="train", **opts)
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(f"{f}: cannot read as {kind} ({', '.join(f'{k} {v!r}' for k, v in opts.items()) or 'defaults'}): "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        out[split] = (ds, str(f))
    return out


def _load_hub(cfg: DataConfig) -> dict:
    import datasets
    try:
        dd = datasets.load_dataset(cfg.source, cfg.hub_config)
    except Exception as e:
        raise DataError(f"cannot load dataset '{cfg.source}' (config {cfg.hub_config!r}) from the hub or its "
                        f"cache: {type(e).__name__}: {e}") from None
    out = {}
    for name, ds in dd.items():
        split = SPLIT_ALIASES.get(name)
        if split:
            out[split] = (ds, f"{cfg.source}[{name}]")
    if "train" not in out:
        raise DataError(f"dataset '{cfg.source}' has no train split (has {list(dd)})")
    return out


def _rows(ds, where: str, cfg: DataConfig) -> tuple[list[dict], list[str] | None]:
    """Validated {'text','label'} rows of one split, and the label names the source declares."""
    cols = list(ds.column_names)
    for flag, col in (("data.text_field", cfg.text_field), ("data.label_field", cfg.label_field)):
        if col not in cols:
            raise DataError(f"{where}: no column '{col}' ({flag}); columns are {cols}")
    feat = ds.features[cfg.label_field]
    declared = list(feat.names) if hasattr(feat, "names") else cfg.label_names
    rows = []
    for i, (text, label) in enumerate(zip(ds[cfg.text_field], ds[cfg.label_field])):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: row {i + 1}: empty or missing text in column '{cfg.text_field}'")
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{where}: row {i + 1}: empty or missing label in column '{cfg.label_field}'")
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            label = str(label)
        if isinstance(label, int) and declared is not None:
            if not 0 <= label < len(declared):
                raise DataError(f"{where}: row {i + 1}: label id {label} outside the {len(declared)} "
                                f"label names (data.label_names)")
            label = declared[label]
        rows.append({"text": " ".join(text.split()), "label": str(label).strip()})
    return rows, declared


def load_splits(cfg: DataConfig) -> tuple[dict[str, list[dict]], dict[str, str], list[str]]:
    """(rows per split, where each split came from, label order)."""
    if cfg.source == "builtin":
        raise DataError("data.source: 'builtin' (the old synthetic set) is gone; use 'debian' (the shipped real "
                        "set) or 'synthetic' (keyword soup, for unit tests only)")
    if cfg.source == "synthetic":
        rows = synthetic_data.generate(cfg.synthetic_rows)
        return {"train": rows}, {"train": "synthetic"}, list(synthetic_data.LABELS)
    if cfg.source == "debian":
        from .corpus import debian_sections as deb
        splits = {k: [{"text": r["text"], "label": r["label"]} for r in v] for k, v in deb.load().items()}
        return splits, {k: f"debian[{k}]" for k in splits}, list(deb.SECTIONS)
    raw = _load_local(cfg) if _is_local(cfg.source) else _load_hub(cfg)
    splits, origin, declared = {}, {}, None
    for split, (ds, where) in raw.items():
        splits[split], d = _rows(ds, where, cfg)
        origin[split] = where
        declared = declared or d
    labels = list(declared) if declared else sorted({r["label"] for r in splits["train"]})
    return splits, origin, labels


# ---------------------------------------------------------------- sampling

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


# ---------------------------------------------------------------- documents are data; duplicates

def _tokenizer(cfg: Config):
    from .tokens import tokenizer
    check_model_path(cfg)
    return tokenizer(cfg.model.name_or_path)


def _neutralize(splits: dict[str, list[dict]], controls: list[str]) -> dict:
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


def _dedupe(cfg: Config, splits: dict[str, list[dict]], origin: dict[str, str]):
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


# ---------------------------------------------------------------- writing

def all_seeds(cfg: Config) -> list[int]:
    """The LLM's seeds first, then any extra seeds the baselines run (they share the subsets)."""
    return subset_seeds(cfg, RANDOM)


def select(cfg: Config, train: list[dict], train_emb=None) -> tuple[dict[tuple[str, int], list[int]], dict]:
    """(selection, seed) -> order of train rows (prefixes are the subsets), and what each read."""
    d = cfg.data
    emb = {} if train_emb is None else {"x": train_emb}

    def embed():
        if "x" not in emb:
            from .embeddings import embed as frozen
            emb["x"] = frozen(cfg, [r["text"] for r in train])
        return emb["x"]
    orders, record = {}, {}
    for sel in d.selection:
        for seed in subset_seeds(cfg, sel):
            oracle = LabelOracle([r["label"] for r in train])
            orders[(sel, seed)] = selection_order(sel, n_rows=len(train), sizes=d.sizes, seed=seed, oracle=oracle,
                                                  stratify=d.stratify, embed=embed)
            top = orders[(sel, seed)][:max(d.sizes)]
            outside = sorted(oracle.read - set(top)) if sel != RANDOM else []
            if outside:  # the oracle stops a leak as it happens; this says so if one ever got past it
                raise DataError(f"data.selection {sel}: read the labels of {len(outside)} row(s) outside its subsets")
            # what the strategy says it reads, where it read any label (stratified random reads all of them)
            record.setdefault(sel, {"reads": get_strategy(sel).reads if oracle.read else "no label",
                                    "seeds": [], "labels_read": {}})
            record[sel]["seeds"].append(seed)
            record[sel]["labels_read"][str(seed)] = len(oracle.read)
    return orders, record


def _check_labels(splits: dict[str, list[dict]], origin: dict[str, str], labels: list[str]) -> list[str]:
    """Every label declared and seen in train; returns the declared labels that train holds."""
    for lab in sorted({r["label"] for r in splits["train"]} - set(labels)):
        raise DataError(f"{origin['train']}: label '{lab}' is not among the declared label names {labels}")
    train_labels = {r["label"] for r in splits["train"]}
    for split in ("valid", "test"):
        for r in splits.get(split, []):
            if r["label"] not in train_labels:
                raise DataError(f"{r['_src']}: label '{r['label']}' in the {split} split does not occur in the "
                                f"train split")
    return [lab for lab in labels if lab in train_labels]


def build(cfg: Config) -> dict:
    """Run the data step; returns the manifest. Everything is checked before anything is written."""
    d = cfg.data
    splits, origin, labels = load_splits(d)
    tok = _tokenizer(cfg)
    controls = control_strings(tok)
    for lab in labels:
        if any(c in lab for c in controls):
            raise DataError(f"{origin['train']}: label {lab!r} holds the model's control token "
                            f"{next(c for c in controls if c in lab)!r}; rename the label")
    for split, rows in splits.items():
        for i, r in enumerate(rows):
            r["_src"] = f"{origin[split]}: row {i + 1}"
    control_found = _neutralize(splits, controls)
    _check_labels(splits, origin, labels)  # the source's own splits, before duplicates move rows
    splits, emb, dups = _dedupe(cfg, splits, origin)
    labels = _check_labels(splits, origin, labels)
    n_train = len(splits["train"])
    for n in d.sizes:
        if n > n_train:
            raise DataError(f"data.sizes: size {n} is larger than the train split ({n_train} rows, "
                            f"{origin['train']})")

    instruction = build_instruction(labels)
    files: dict[str, list[dict]] = {}
    meta: dict[str, dict] = {}
    orders, selection = select(cfg, splits["train"], None if emb is None else emb["train"])
    # labelling rounds: the asked selection grows by the rows a person labelled (pool rows join train)
    extra, given, rounds_done = rounds.apply(cfg, rounds.read_rounds(cfg, labels), splits["train"], orders,
                                             lambda t: neutralize(t, controls)) if d.new_labels else ([], {}, [])
    train = splits["train"] + extra
    for (sel, seed), order in orders.items():
        lab = given.get((sel, seed), {})
        for n in sizes_for(cfg, sel, seed):
            name = train_file_name(n, seed, d, sel)
            files[name] = [alpaca_row(instruction, train[i]["text"], lab.get(i, train[i]["label"])) for i in order[:n]]
            meta[name] = {"kind": "train", "size": n, "seed": seed, "selection": sel}
    scored: dict[str, list[int]] = {}
    for split in ("valid", "test"):
        rows = splits[split]
        scored[split] = list(range(len(rows)))
        if d.eval_size is not None and d.eval_size < len(rows):
            order = prefix_order([r["label"] for r in rows], d.split_seed, d.stratify)
            scored[split] = sorted(order[:d.eval_size])
        files[eval_file_name(split)] = [alpaca_row(instruction, rows[i]["text"], rows[i]["label"]) for i in scored[split]]
        meta[eval_file_name(split)] = {"kind": split, "size": len(scored[split]), "of": len(rows)}

    # scored rows (0-based, as in the predictions) that have a duplicate in train
    dups["scored_with_train_duplicate"] = {split: [k for k, i in enumerate(scored[split]) if splits[split][i].get("_x")]
                                           for split in ("valid", "test")}
    token_stats = measure_tokens(cfg, files, tok)
    report = audit_report(cfg, splits, labels, emb, dups, control_found, scored,
                          {n: [r["output"] for r in rows] for n, rows in files.items() if meta[n]["kind"] == "train"})
    out = Path(d.out_dir)
    dataset_info = {}
    for name, rows in files.items():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{name}.json", dumps_json(rows))
        dataset_info[name] = {"file_name": f"{name}.json", "formatting": "alpaca", "columns": dict(ALPACA_COLUMNS)}
        meta[name]["class_counts"] = dict(sorted(Counter(r["output"] for r in rows).items()))
        meta[name]["sha256"] = sha256_file(out / f"{name}.json")
        meta[name]["tokens"] = token_stats[name]
    atomic_write_json(out / "dataset_info.json", dataset_info)
    # the whole train split, in row order: the labelling plan ranks the rows not yet used from it
    atomic_write_text(out / TRAIN_ROWS, dumps_json([{"text": r["text"], "label": r["label"]} for r in train]))
    atomic_write_json(out / AUDIT, report)
    for w in report["warnings"]:
        print(f"data: warning: {w}")
    print(f"data: audit: {summary_line(report)} ({out / AUDIT})")
    manifest = {
        "source": d.source,
        "hub_config": d.hub_config,
        "origin": origin,
        "config_hash": cfg.hash("data"),
        "labels": labels,
        "split_rows": {s: len(splits[s]) for s in ("train", "valid", "test")},
        "sizes": sorted(d.sizes),
        "seeds": all_seeds(cfg),
        "stratify": d.stratify,
        # which rows each strategy chose (train row numbers, 0-based, in order: every prefix a subset)
        # and which labels it read to choose them
        "selection": {sel: {**rec, "orders": {str(s): orders[(sel, s)][:max(sizes_for(cfg, sel, s))] for s in rec["seeds"]}}
                      for sel, rec in selection.items()},
        # each labelling round (data.new_labels): its file and hash, the ask it answered, the rows it added
        "rounds": rounds_done,
        "files": meta,
        "duplicates": {k: report["duplicates"][k] for k in ("action", "grouped", "dropped", "straddling_groups")},
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def measure_tokens(cfg: Config, files: dict[str, list[dict]], tok=None) -> dict[str, dict]:
    """Count every written row's tokens (system + user + answer, the model's chat template) and
    enforce train.cutoff_len on all of them, so no row is cut in silence by LLaMA-Factory (training)
    and seen whole by the server (scoring). With data.max_tokens, documents are cut instead, in the
    rows themselves, so training, scoring and the baselines all read the same cut text."""
    from .prompt import build_input, chat_messages, strip_input
    from .tokens import answer_len, prompt_len, stats, truncate_text
    tok = tok or _tokenizer(cfg)
    limit = cfg.data.max_tokens or cfg.train.cutoff_len
    cache: dict[tuple, tuple[int, int, str]] = {}  # (input, output) -> (prompt, answer, cut input)

    def measure(r: dict) -> tuple[int, int, str]:
        key = (r["input"], r["output"])
        if key not in cache:
            text, a = r["input"], answer_len(tok, r["output"])
            p = prompt_len(tok, chat_messages({**r, "input": text}))
            while cfg.data.max_tokens and p + a > limit:  # cut the document, then measure again
                text = build_input(truncate_text(tok, strip_input(text), p + a - limit))
                p = prompt_len(tok, chat_messages({**r, "input": text}))
            cache[key] = (p, a, text)
        return cache[key]

    out, too_long = {}, []
    for name, rows in files.items():
        lengths, prompts, cut = [], [], 0
        for i, r in enumerate(rows):
            p, a, text = measure(r)
            if text != r["input"]:
                r["input"], cut = text, cut + 1
            if p + a > limit:
                too_long.append((p + a, name, i))
            lengths.append(p + a)
            prompts.append(p)
        out[name] = {**stats(lengths), "max_prompt": max(prompts), "longest_prompt_row": prompts.index(max(prompts)) + 1,
                     "truncated": cut}
    if too_long:
        n, name, i = max(too_long)
        raise DataError(f"{len(too_long)} row(s) are longer than train.cutoff_len={cfg.train.cutoff_len} tokens "
                        f"(longest: {cfg.data.out_dir}/{name}.json row {i + 1}, {n} tokens with the chat template); "
                        f"raise train.cutoff_len, or set data.max_tokens to cut the documents to fit (the same cut "
                        f"for training, scoring and the baselines)")
    if cfg.data.max_tokens:
        n_cut = sum(1 for k, v in cache.items() if v[2] != k[0])
        print(f"data: {n_cut} document(s) cut to fit data.max_tokens={cfg.data.max_tokens}")
    return out
