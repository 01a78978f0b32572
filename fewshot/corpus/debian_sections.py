"""The embedded default set: real, human-labelled text from Debian's package index.

Each row is one (source package, archive section) of Debian main, for nine topical sections; the
text is the English description a maintainer wrote (short description, a full stop, the long
description without Debian's paragraph dots), the label the section the archive files it under.
Sibling binaries of one source (`foo`, `foo-data`, `foo-doc`) give one row, and the split is fixed
per source package, so no source package ever straddles train/valid/test.

The data step reads the committed snapshot (`debian_sections.jsonl.gz` beside this file) and never
the network. Rebuild it from the apt lists of a Debian machine:

    apt-get update -o Acquire::Languages=en
    python -m fewshot.corpus.debian_sections --rebuild     # rewrites the snapshot + provenance
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import io
import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNAPSHOT = HERE / "debian_sections.jsonl.gz"
PROVENANCE = HERE / "debian_sections.md"
SECTIONS = ["science", "games", "sound", "graphics", "math", "mail", "editors", "database", "video"]
SPLITS = (("test", 0.1), ("valid", 0.2))  # cumulative share of source packages per split; rest train
LISTS = "/var/lib/apt/lists"
# Packaging artefacts, not topical text: their description is about the package, not the program.
NOT_TOPICAL = re.compile(r"transitional|dummy package|debug symbols", re.I)


def load() -> dict[str, list[dict]]:
    """{'train'|'valid'|'test': [{'text', 'label', 'source', 'package'}]} from the snapshot."""
    out: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    with gzip.open(SNAPSHOT, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out[r.pop("split")].append(r)
    return out


# ---------------------------------------------------------------- rebuilding from the apt lists

def _cat(path: str) -> str:
    """apt's own reader decompresses whatever compression the lists use (lz4, xz, gz, none)."""
    return subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], check=True, capture_output=True,
                          text=True).stdout


def _paragraphs(text: str):
    """deb822 paragraphs as dicts; a continuation line is kept with its leading space."""
    for block in text.split("\n\n"):
        rec, key = {}, None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                rec[key] += "\n" + line
            elif ":" in line:
                key, _, val = line.partition(":")
                rec[key] = val.strip()
        if rec:
            yield rec


def description_text(desc: str) -> str:
    """'short' + continuation lines -> 'short. long ...' with paragraph dots removed."""
    first, *rest = desc.split("\n")
    body = " ".join(ln.strip() for ln in rest if ln.strip() != ".")
    short = first.strip()
    text = short if short.endswith((".", "!", "?")) else short + "."
    return " ".join(f"{text} {body}".split())


def split_of(source: str) -> str:
    u = int(hashlib.sha256(f"debian-sections:{source}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    for name, upto in SPLITS:
        if u < upto:
            return name
    return "train"


def rebuild(lists: str = LISTS, suite: str = "bookworm") -> list[dict]:
    pk = glob.glob(f"{lists}/*_dists_{suite}_main_binary-amd64_Packages*")
    tr = glob.glob(f"{lists}/*_dists_{suite}_main_i18n_Translation-en*")
    if not pk or not tr:
        raise SystemExit(f"no {suite} main Packages / Translation-en lists in {lists}: run "
                         f"`apt-get update -o Acquire::Languages=en` on a Debian {suite} machine first")
    long_desc = {(r["Package"], r.get("Description-md5")): r["Description-en"]
                 for r in _paragraphs(_cat(tr[0])) if "Description-en" in r}
    chosen: dict[tuple[str, str], dict] = {}
    for r in _paragraphs(_cat(pk[0])):
        section = r.get("Section", "")
        if section not in SECTIONS:
            continue
        pkg = r["Package"]
        src = r.get("Source", pkg).split(" ")[0]
        desc = long_desc.get((pkg, r.get("Description-md5")))
        if desc is None or NOT_TOPICAL.search(desc.split("\n")[0]):
            continue
        # one row per (source, section): the binary named like the source, else the shortest name
        rank = (pkg != src, len(pkg), pkg)
        key = (src, section)
        if key not in chosen or rank < chosen[key]["_rank"]:
            chosen[key] = {"_rank": rank, "text": description_text(desc), "label": section, "source": src,
                           "package": pkg}
    rows, seen = [], set()
    for (src, section), r in sorted(chosen.items()):
        if r["text"] in seen:  # the same description under two sources: keep the first
            continue
        seen.add(r["text"])
        rows.append({"split": split_of(src), "text": r["text"], "label": section, "source": src,
                     "package": r["package"]})
    return rows


def write_snapshot(rows: list[dict], lists: str = LISTS, suite: str = "bookworm") -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:  # mtime 0: byte-identical rebuilds
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode())
    SNAPSHOT.write_bytes(buf.getvalue())
    release = next(iter(glob.glob(f"{lists}/*_dists_{suite}_InRelease")), "")
    head = {k: v for k, v in (ln.split(": ", 1) for ln in Path(release).read_text().splitlines()[:12]
                             if ": " in ln)} if release else {}
    words = sorted(len(r["text"].split()) for r in rows)
    table = ["| section | train | valid | test | all | share |", "|---|---:|---:|---:|---:|---:|"]
    per = Counter((r["label"], r["split"]) for r in rows)
    for s in sorted(SECTIONS, key=lambda s: -sum(per[(s, x)] for x in ("train", "valid", "test"))):
        n = [per[(s, x)] for x in ("train", "valid", "test")]
        table.append(f"| {s} | {n[0]} | {n[1]} | {n[2]} | {sum(n)} | {sum(n) / len(rows):.1%} |")
    tot = Counter(r["split"] for r in rows)
    table.append(f"| all | {tot['train']} | {tot['valid']} | {tot['test']} | {len(rows)} | |")
    PROVENANCE.write_text(f"""# Debian package descriptions by archive section (the embedded default set)

- what: one row per (source package, section) of Debian main, for the sections
  {', '.join(SECTIONS)}; text = a binary package's English description (short description, a full
  stop, the long description without paragraph dots), written by its maintainers; label = the
  archive section. The binary named like its source is preferred, else the shortest name.
  Transitional/dummy packages are dropped, and so is a description already taken from another source.
- splits: fixed per source package (sha256 of the source name: 10% test, 10% valid, 80% train), so
  sibling packages never straddle the splits.
- from: {head.get('Origin', 'Debian')} {head.get('Codename', suite)} {head.get('Version', '')} main,
  binary-amd64 Packages + i18n Translation-en, Release date {head.get('Date', 'unknown')};
  rebuilt {time.strftime('%Y-%m-%d')}.
- size: {len(rows)} rows, median {words[len(words) // 2]} words (min {words[0]}, max {words[-1]}).
- licence: package descriptions are part of the Debian archive metadata (each package's own licence).
- rebuild: `apt-get update -o Acquire::Languages=en && python -m fewshot.corpus.debian_sections --rebuild`
  (reads the apt lists only; the data step reads this snapshot, never the network).

{chr(10).join(table)}
""")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rebuild", action="store_true", help="rewrite the snapshot from the apt lists")
    ap.add_argument("--lists", default=LISTS)
    ap.add_argument("--suite", default="bookworm")
    a = ap.parse_args()
    if a.rebuild:
        rows = rebuild(a.lists, a.suite)
        write_snapshot(rows, a.lists, a.suite)
        print(f"{SNAPSHOT}: {len(rows)} rows; provenance in {PROVENANCE}")
    else:
        print({k: len(v) for k, v in load().items()})
