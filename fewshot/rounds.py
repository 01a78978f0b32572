"""Labelling rounds: the plan's ask (report/asks/<ask>.json, the rows report/label_next.csv lists) and the
files a person fills and brings back (data.new_labels, one per round, in order).

A row's id is stable and checkable: `train-<row>-<hash>` or `pool-<row>-<hash>` (1-based row of the
train split or of plan.pool, and the first 8 hex digits of the sha1 of its whitespace-normalised text),
so a file brought back names rows that can be found again and a text that changed is caught.

Read by the data step (every check, then the subsets grow by exactly the filled rows), by runs.py
(which sizes each selection has) and by label_next (which pool rows are already labelled). Three
formats read back: the CSV or JSONL that label_next wrote, with its `label` column filled, and a Label
Studio JSON export of those rows imported as tasks (each task's `data` holds the columns; the last
annotation that was not cancelled gives the label through its `choices`)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError
from .fileio import read_json, sha256_file

ASKS = "asks"            # report/asks/<ask>.json: every ask the plan made, kept for the round trip
COLUMNS = ("rank", "row_id", "label", "text", "ask")  # label_next.csv / .jsonl, in this order


def text_hash(text: str) -> str:
    return hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()[:8]


def row_id(where: str, index: int, text: str) -> str:
    """where: 'train' or 'pool'; index: 0-based row of that source."""
    return f"{where}-{index + 1}-{text_hash(text)}"


def parse_id(rid: str) -> tuple[str, int, str] | None:
    """('train'|'pool', 0-based index, hash), or None when it is not an id this tool wrote."""
    parts = str(rid).strip().split("-")
    if len(parts) != 3 or parts[0] not in ("train", "pool") or not parts[1].isdigit() or int(parts[1]) < 1:
        return None
    return parts[0], int(parts[1]) - 1, parts[2]


def ask_dir(cfg) -> Path:
    return Path(cfg.report.out_dir) / ASKS


def ask_id(selection: str, seed: int, have: int, ids: list[str]) -> str:
    return hashlib.sha256(json.dumps([selection, seed, have, ids]).encode()).hexdigest()[:12]


def load_ask(cfg, ask: str, where: str) -> dict:
    p = ask_dir(cfg) / f"{ask}.json"
    if not p.exists():
        raise DataError(f"{where}: ask {ask!r} not found ({p}): label files come back to the project whose report "
                        f"asked for them (report.out_dir keeps every ask in {ASKS}/)")
    return read_json(p)


# ---------------------------------------------------------------- reading a filled file

@dataclass
class Filled:
    """One row of a label file: where it is in the file (1-based, as a spreadsheet shows it past the header)."""
    line: int
    row_id: str
    label: str | None
    text: str | None
    ask: str | None


def _cell(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v != v:  # NaN from a spreadsheet's empty cell
        return None
    s = str(v).strip()
    return s or None


def _filled(line: int, d: dict, label=None, from_label: bool = True) -> Filled:
    """One row from its columns (a CSV or JSONL row, or a Label Studio task's data)."""
    return Filled(line, _cell(d.get("row_id")) or "", _cell(d.get("label")) if from_label else label,
                  _cell(d.get("text")), _cell(d.get("ask")))


def _from_dicts(rows: list, where: str, first: int = 1) -> list[Filled]:
    """Rows as objects with the columns label_next wrote; `first`: the line the first row is on."""
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise DataError(f"{where}: row {i + first}: expected an object with row_id and label, got {type(r).__name__}")
        if "row_id" not in r:
            raise DataError(f"{where}: row {i + first}: no 'row_id' (keep the columns label_next wrote: {', '.join(COLUMNS)})")
        out.append(_filled(i + first, r))
    return out


def _label_studio(tasks: list, where: str) -> list[Filled]:
    """A Label Studio JSON export: [{"data": {...columns...}, "annotations": [{"result": [{"type": "choices",
    "value": {"choices": [label]}}], "was_cancelled": false}]}]; a task with no annotation is left blank."""
    out = []
    for i, t in enumerate(tasks):
        data = t.get("data") or {}
        if "row_id" not in data:
            raise DataError(f"{where}: task {i + 1} (Label Studio id {t.get('id')}): its data has no 'row_id' "
                            f"(import label_next.csv as it was written, so each task keeps its row_id)")
        label = None
        for ann in [a for a in t.get("annotations") or [] if not a.get("was_cancelled")][-1:]:
            choices = [c for r in ann.get("result") or [] if r.get("type") == "choices"
                       for c in (r.get("value") or {}).get("choices") or []]
            if len(choices) > 1:
                raise DataError(f"{where}: task {i + 1} (row_id {data['row_id']}): {len(choices)} choices "
                                f"{choices}; a row takes one label")
            label = _cell(choices[0]) if choices else None
        out.append(_filled(i + 1, data, label, from_label=False))
    return out


def read_filled(path: str | Path) -> list[Filled]:
    """The rows of one label file: label_next.csv / .jsonl filled in, or a Label Studio JSON export."""
    p = Path(path).expanduser()
    where = str(p)
    if not p.exists():
        raise DataError(f"data.new_labels: file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        import pandas as pd
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except Exception as e:
            raise DataError(f"{where}: cannot read as CSV: {type(e).__name__}: {e}") from None
        if "row_id" not in df.columns:
            raise DataError(f"{where}: no 'row_id' column (keep the columns label_next wrote: {', '.join(COLUMNS)})")
        return _from_dicts(df.to_dict("records"), where, first=2)  # the header is line 1
    text = p.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{where}: line {i + 1}: not JSON ({e.msg})") from None
        return _from_dicts(rows, where)
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(rows, list):
            raise DataError(f"{where}: expected a list of rows or of Label Studio tasks")
        if rows and isinstance(rows[0], dict) and "data" in rows[0]:
            return _label_studio(rows, where)
        return _from_dicts(rows, where)
    raise DataError(f"{where}: unsupported label file '{p.suffix}' (label_next.csv or .jsonl filled in, or a Label "
                    f"Studio JSON export)")


# ---------------------------------------------------------------- a round, checked against its ask

@dataclass
class Round:
    """One label file applied: the ask it answers, and the filled rows in the ask's rank order."""
    file: str
    sha256: str
    ask: dict
    rows: list[tuple[str, str, str | None]] = field(default_factory=list)  # (row_id, label, text in the file)
    blank: int = 0

    @property
    def selection(self) -> str:
        return self.ask["selection"]

    @property
    def seed(self) -> int:
        return int(self.ask["seed"])

    @property
    def size(self) -> int:
        """The subset's size once this round's rows join it."""
        return int(self.ask["have"]) + len(self.rows)


def read_round(cfg, path: str, labels: list[str] | None = None) -> Round:
    """One file, checked against its ask: one ask per file, every id asked for and given once, each label
    in the label set (when known). Blank rows are not used (they stay unlabelled); a file with none filled fails."""
    where = str(Path(path).expanduser())
    filled = read_filled(path)
    if not filled:
        raise DataError(f"{where}: no rows")
    asks = {f.ask for f in filled if f.ask}
    if not asks:
        raise DataError(f"{where}: no 'ask' column: keep the columns label_next wrote ({', '.join(COLUMNS)})")
    if len(asks) > 1:
        raise DataError(f"{where}: rows from {len(asks)} asks ({', '.join(sorted(asks))}); one file per round")
    ask = load_ask(cfg, asks.pop(), where)
    asked = {rid: k for k, rid in enumerate(ask["rows"])}
    seen: dict[str, int] = {}
    got = []
    for f in filled:
        if not f.row_id:
            raise DataError(f"{where}: row {f.line}: empty row_id")
        if f.row_id in seen:
            raise DataError(f"{where}: row {f.line}: row_id {f.row_id} given twice (first at row {seen[f.row_id]})")
        seen[f.row_id] = f.line
        if f.row_id not in asked:
            raise DataError(f"{where}: row {f.line}: row_id {f.row_id} was not asked for (ask {ask['ask']} lists "
                            f"{len(asked)} rows; label only the rows label_next listed)")
        if f.text is not None and text_hash(f.text) != parse_id(f.row_id)[2]:
            raise DataError(f"{where}: row {f.line}: the text no longer matches its row_id {f.row_id} (edited?); "
                            f"label the row as it was listed")
        if f.label is None:
            continue
        if labels is not None and f.label not in labels:
            raise DataError(f"{where}: row {f.line}: label {f.label!r} (row_id {f.row_id}) is not one of the "
                            f"{len(labels)} labels {labels}")
        got.append((asked[f.row_id], f.row_id, f.label, f.text))
    if not got:
        raise DataError(f"{where}: no label filled in ({len(filled)} rows, every 'label' cell empty)")
    got.sort()
    return Round(where, sha256_file(Path(path).expanduser()), ask, [(r, lab, t) for _, r, lab, t in got],
                 blank=len(filled) - len(got))


def read_rounds(cfg, labels: list[str] | None = None) -> list[Round]:
    """Every file of data.new_labels, in order; each round must continue from the size the one before
    reached on its selection and seed (the ask's 'have')."""
    out: list[Round] = []
    held: dict[tuple[str, int], int] = {}
    for path in cfg.data.new_labels:
        r = read_round(cfg, path, labels)
        key = (r.selection, r.seed)
        want = held.get(key)
        if want is not None and int(r.ask["have"]) != want:
            raise DataError(f"{r.file}: this ask continues from {r.ask['have']} {r.selection} rows, but the rounds "
                            f"before it reach {want}: list data.new_labels in the order the asks were made")
        if not want and int(r.ask["have"]) not in cfg.data.sizes:
            raise DataError(f"{r.file}: this ask continues from {r.ask['have']} rows, which neither data.sizes "
                            f"{sorted(cfg.data.sizes)} nor an earlier round reached: keep the sizes the asking study "
                            f"had, and list data.new_labels in the order the asks were made")
        held[key] = r.size
        out.append(r)
    others = {(r.selection, r.seed) for r in out}
    if len(others) > 1:
        raise DataError(f"data.new_labels: rounds on {len(others)} selections/seeds {sorted(others)}; a labelling "
                        f"loop grows one selection's rows")
    return out


def grown(cfg) -> str | None:
    """The selection labelling rounds grew (the plan continues it), or None before any round."""
    sizes = round_sizes(cfg)
    return next(iter(sizes))[0] if sizes else None


def next_step(cfg, csv_path: str | Path, rows: int) -> dict:
    """What a person does with an ask: which file to fill, where to save it, what to run (one line each)."""
    k = len(cfg.data.new_labels) + 1
    save = f"labels/round{k}.csv"
    listed = ", ".join([*cfg.data.new_labels, save])
    return {"fill": str(csv_path), "rows": rows, "save_as": save, "round": k,
            "config_line": f"data.new_labels: [{listed}]", "command": f"CONFIG={_study_config(cfg)} bash study.sh"}


def _study_config(cfg) -> str:
    """The config the study was started with: the report step runs on a resolved copy that names it."""
    p = Path(cfg.path or "configs/demo.yaml")
    if p.name == "config.resolved.yaml" and p.exists():
        first = p.read_text().splitlines()[0]
        if first.startswith("# resolved from ") and ";" in first:
            return first[len("# resolved from "):first.index(";")]
    return str(p)


def rows_available(cfg) -> tuple[str, int] | None:
    """What a plan can still ask for: ('train', rows of the train split) or ('pool', plan.pool's rows not yet
    labelled); None before the data step has run."""
    p = Path(cfg.data.out_dir) / "manifest.json"
    if not p.exists():
        return None
    man = read_json(p)
    if cfg.plan.pool:
        labelled = {rid for r in man.get("rounds", []) for rid in r["rows"] if rid.startswith("pool-")}
        return "pool", len(pool_texts(cfg.plan.pool, cfg.data.text_field)) - len(labelled)
    return "train", int(man["split_rows"]["train"])


_SIZES: dict[tuple, dict] = {}


def round_sizes(cfg) -> dict[tuple[str, int], list[int]]:
    """(selection, seed) -> the sizes the rounds add: what runs.py adds to data.sizes for that pair only.
    Read once per set of files as they are now (every run name asks)."""
    if not cfg.data.new_labels:
        return {}
    stamp = tuple((p, Path(p).expanduser().stat().st_mtime_ns if Path(p).expanduser().exists() else None)
                  for p in cfg.data.new_labels) + (cfg.report.out_dir, tuple(cfg.data.sizes))
    if stamp not in _SIZES:
        out: dict[tuple[str, int], list[int]] = {}
        for r in read_rounds(cfg):
            out.setdefault((r.selection, r.seed), []).append(r.size)
        _SIZES[stamp] = out
    return _SIZES[stamp]


# ---------------------------------------------------------------- the pool, and a round joining the subsets

def pool_texts(path: str | Path, text_field: str) -> list[str]:
    """plan.pool's texts (data's formats), whitespace-normalised as the train rows are: rows the plan may
    ask a person to label. Its labels, if it has any, are never read."""
    import pandas as pd
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"plan.pool: file not found: {p}")
    readers = {".csv": pd.read_csv, ".jsonl": lambda f: pd.read_json(f, lines=True), ".json": pd.read_json,
               ".parquet": pd.read_parquet}
    if p.suffix.lower() not in readers:
        raise DataError(f"plan.pool: {p}: unsupported format '{p.suffix}' (use .csv, .json, .jsonl or .parquet)")
    df = readers[p.suffix.lower()](p)
    if text_field not in df.columns:
        raise DataError(f"plan.pool: {p}: no column '{text_field}' (data.text_field); columns are {list(df.columns)}")
    texts = []
    for i, t in enumerate(df[text_field]):
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"plan.pool: {p}: row {i + 1}: empty or missing text in column '{text_field}'")
        texts.append(" ".join(t.split()))
    return texts


def apply(cfg, rounds: list[Round], train: list[dict], orders: dict, clean) -> tuple[list[dict], dict, list[dict]]:
    """Grow the asked selection's order by each round's filled rows, right after the rows it held, in the
    ask's rank order; every prefix up to the rows held stays as it was, so nothing finished changes.
    Returns (pool rows that joined the train rows, appended after them; (selection, seed) -> {train row:
    label given}; one manifest record per round). clean: what the data step does to a document's text."""
    extra: list[dict] = []
    given: dict[tuple[str, int], dict[int, str]] = {}
    records, pooled, pools = [], {}, {}
    for r in rounds:
        key = (r.selection, r.seed)
        if key not in orders:
            raise DataError(f"{r.file}: its ask grows {r.selection} rows of seed {r.seed}, which this config does not "
                            f"make (data.selection, data.seeds)")
        order, have = orders[key], int(r.ask["have"])
        held = set(order[:have])
        new, relabelled = [], 0
        for rid, label, _ in r.rows:
            where, i, h = parse_id(rid)
            if where == "train":
                if i >= len(train) or text_hash(train[i]["text"]) != h:
                    raise DataError(f"{r.file}: row_id {rid}: train row {i + 1} no longer has that text (the data "
                                    f"changed since the ask); rerun the study that asked, or ask again")
                idx = i
                relabelled += train[i]["label"] != label
            else:
                if r.ask["pool"] not in pools:  # read once, however many of its rows the rounds label
                    pools[r.ask["pool"]] = pool_texts(r.ask["pool"], cfg.data.text_field)
                pool = pools[r.ask["pool"]]
                if i >= len(pool) or text_hash(pool[i]) != h:
                    raise DataError(f"{r.file}: row_id {rid}: {r.ask['pool']} row {i + 1} no longer has that text")
                if i not in pooled:
                    extra.append({"text": clean(pool[i]), "label": label, "_src": f"{r.ask['pool']}: row {i + 1}"})
                    pooled[i] = len(train) + len(extra) - 1
                idx = pooled[i]
            if idx in held:
                raise DataError(f"{r.file}: row_id {rid} is already in the {have}-row {r.selection} subset")
            new.append(idx)
            given.setdefault(key, {})[idx] = label
        taken = set(new)
        orders[key] = order[:have] + new + [x for x in order[have:] if x not in taken]
        records.append({"file": r.file, "sha256": r.sha256, "ask": r.ask["ask"], "selection": r.selection,
                        "seed": r.seed, "from": have, "to": r.size, "rows": [x for x, _, _ in r.rows],
                        "blank": r.blank, "labels_unlike_source": relabelled,
                        "file_modified": _mtime(r.file), "asked": r.ask.get("created")})
    return extra, given, records


def _mtime(path: str) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
