"""Why a local file will not parse, said before `datasets` says "An error occurred while generating the
dataset": the encoding (not UTF-8 at byte N, and the likely one), the CSV separator (one column found,
and the likely one), and the header and column names found. The fixes are config keys: data.encoding,
data.delimiter."""
from __future__ import annotations

import csv
from pathlib import Path

from .errors import DataError

SEPARATORS = [",", ";", "\t", "|"]
NAMES = {";": "';'", "\t": "a tab ('\\t')", "|": "'|'", ",": "','"}


def check_encoding(f: Path, encoding: str | None) -> str:
    """The encoding to read `f` with; a DataError naming the byte and the likely encoding if it is not
    `encoding` (UTF-8 when unset)."""
    raw = f.read_bytes()
    enc = encoding or "utf-8"
    try:
        raw.decode(enc)
        return enc
    except LookupError:
        raise DataError(f"data.encoding: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as e:
        guess = likely_encoding(raw)
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{f}: not {enc} at byte {e.start} (line {line}: {raw[max(0, e.start - 20):e.start + 10]!r}); "
                        f"it looks like {guess}: set data.encoding: {guess}" if guess else
                        f"{f}: not {enc} at byte {e.start} (line {line}); set data.encoding to the file's encoding") from None


def likely_encoding(raw: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
        best = from_bytes(raw[:200_000]).best()
        return best.encoding if best else None
    except ImportError:
        return None


def check_csv(f: Path, encoding: str, delimiter: str | None, needed: list[str]) -> None:
    """With the default ',' a header that splits into one column while another separator splits it into
    several: say so, with the columns each would give."""
    with open(f, encoding=encoding, newline="") as fh:
        head = fh.readline()
        sample = head + "".join(fh.readline() for _ in range(20))
    if not head.strip():
        raise DataError(f"{f}: the first line (the header) is empty; a CSV needs a header naming the columns, "
                        f"e.g. text,label")
    sep = delimiter or ","
    cols = next(csv.reader([head], delimiter=sep))
    if all(c in cols for c in needed):
        return
    found = {s: next(csv.reader([head], delimiter=s)) for s in SEPARATORS if s != sep}
    better = [s for s, c in found.items() if all(n in c for n in needed)] or \
             [s for s, c in found.items() if len(c) > max(1, len(cols))]
    if better:
        try:
            sniffed = csv.Sniffer().sniff(sample, delimiters="".join(SEPARATORS)).delimiter
        except csv.Error:
            sniffed = better[0]
        s = sniffed if sniffed in better else better[0]
        raise DataError(f"{f}: the header splits on {NAMES.get(sep, repr(sep))} into {len(cols)} column(s) {cols[:6]}, "
                        f"on {NAMES.get(s, repr(s))} into {found[s][:6]}: the separator looks like {NAMES.get(s, repr(s))}; "
                        f"set data.delimiter: {s!r}")
