import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import text_rows, write_rows
from fewshot import synthetic_data
from fewshot.config import load_config
from fewshot.data import build, prefix_order
from fewshot.errors import DataError
from fewshot.prompt import INPUT_PREFIX, build_instruction


def _rows(n, labels=("pos", "neg", "neu"), seed=0):
    return text_rows(n, labels, seed)


def _build(write_config, **extra):
    cfg = load_config(write_config(extra))
    return cfg, build(cfg)


def _load(cfg, name):
    return json.loads((Path(cfg.data.out_dir) / f"{name}.json").read_text())


def test_synthetic_alpaca_files_and_dataset_info(write_config):
    cfg, m = _build(write_config)
    out = Path(cfg.data.out_dir)
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"llm_train_10", "llm_train_30", "llm_valid", "llm_test"}
    for name, entry in info.items():
        assert (out / entry["file_name"]).exists()
        assert entry["columns"] == {"system": "instruction", "prompt": "input", "response": "output"}
    rows = _load(cfg, "llm_train_30")
    assert len(rows) == 30
    assert set(rows[0]) == {"instruction", "input", "output"}
    assert rows[0]["input"].startswith(INPUT_PREFIX)
    assert rows[0]["instruction"] == build_instruction(m["labels"])
    assert "Unknown" not in rows[0]["instruction"]
    assert m["labels"] == synthetic_data.LABELS
    for lab in m["labels"]:
        assert f'"{lab}"' in rows[0]["instruction"]
    assert len(_load(cfg, "llm_valid")) == 40  # eval_size
    assert m["files"]["llm_train_30"]["class_counts"] == dict(sorted(Counter(r["output"] for r in rows).items()))


def test_subsets_are_nested_per_seed_and_differ_across_seeds(write_config):
    cfg, _ = _build(write_config, **{"data.sizes": [10, 30, 90], "data.seeds": [0, 1]})
    small, mid, big = (_load(cfg, f"llm_train_{n}") for n in (10, 30, 90))
    key = lambda r: r["input"]
    assert {key(r) for r in small} <= {key(r) for r in mid} <= {key(r) for r in big}
    other = _load(cfg, "llm_train_30_s1")
    assert {key(r) for r in other} != {key(r) for r in mid}
    assert {key(r) for r in _load(cfg, "llm_train_10_s1")} <= {key(r) for r in other}


def test_baseline_seeds_get_their_own_subsets(write_config):
    cfg, m = _build(write_config, **{"data.seeds": [0], "baselines.seeds": [0, 5]})
    assert m["seeds"] == [0, 5]
    assert (Path(cfg.data.out_dir) / "llm_train_30_s5.json").exists()
    info = json.loads((Path(cfg.data.out_dir) / "dataset_info.json").read_text())
    assert "llm_train_10_s5" in info


def test_stratified_prefixes_keep_class_shares():
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    order = prefix_order(labels, seed=3, stratify=True)
    assert sorted(order) == list(range(1000))
    for n in (10, 50, 200):
        counts = Counter(labels[i] for i in order[:n])
        for lab, share in (("a", .6), ("b", .3), ("c", .1)):
            assert abs(counts[lab] - share * n) <= 1.5, (n, counts)
    # unstratified prefixes drift further at small n for some seed
    drift = max(abs(Counter(labels[i] for i in prefix_order(labels, s, False)[:10])["c"] - 1) for s in range(20))
    assert drift >= 2


@pytest.mark.parametrize("source", ["synthetic", "debian"])
def test_rerun_is_byte_identical(write_config, source):
    cfg, _ = _build(write_config, **{"data.source": source, "data.sizes": [10, 30]})
    out = Path(cfg.data.out_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    build(cfg)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    m = json.loads((out / "manifest.json").read_text())
    import hashlib
    for name, meta in m["files"].items():
        assert hashlib.sha256((out / f"{name}.json").read_bytes()).hexdigest() == meta["sha256"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_local_file_source_makes_stratified_splits(write_config, tmp_path, suffix):
    src = write_rows(tmp_path / f"mine{suffix}", _rows(300))
    cfg, m = _build(write_config, **{"data.source": str(src), "data.eval_size": None})
    assert m["split_rows"] == {"train": 240, "valid": 30, "test": 30}
    assert m["labels"] == ["neg", "neu", "pos"]
    assert m["files"]["llm_valid"]["class_counts"] == {"neg": 10, "neu": 10, "pos": 10}


def test_local_folder_of_splits_with_integer_labels(write_config, tmp_path):
    folder = tmp_path / "ds"
    mk = lambda n, s: [{"body": r["text"], "y": i % 2} for i, r in enumerate(_rows(n, seed=s))]
    write_rows(folder / "train.jsonl", mk(60, 0))
    write_rows(folder / "validation.jsonl", mk(10, 1))
    write_rows(folder / "test.jsonl", mk(10, 2))
    cfg, m = _build(write_config, **{"data.source": str(folder), "data.text_field": "body",
                                     "data.label_field": "y", "data.label_names": ["no", "yes"],
                                     "data.eval_size": None})
    assert m["split_rows"] == {"train": 60, "valid": 10, "test": 10}
    assert {r["output"] for r in _load(cfg, "llm_test")} == {"no", "yes"}


# ------------------------------------------------------------------ bad input

def _expect(write_config, message, **extra):
    cfg = load_config(write_config(extra))
    with pytest.raises(DataError, match=message):
        build(cfg)
    return cfg


def test_missing_file(write_config, tmp_path):
    _expect(write_config, "data file not found: .*nope.jsonl", **{"data.source": str(tmp_path / "nope.jsonl")})


def test_unreadable_format(write_config, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{this is not json")
    _expect(write_config, "broken.json: cannot read as json", **{"data.source": str(bad)})
    txt = tmp_path / "rows.txt"
    txt.write_text("hello")
    _expect(write_config, "rows.txt: unsupported format", **{"data.source": str(txt)})


def test_missing_columns(write_config, tmp_path):
    src = write_rows(tmp_path / "d.jsonl", _rows(60))
    _expect(write_config, r"d.jsonl: no column 'body' \(data.text_field\)",
            **{"data.source": str(src), "data.text_field": "body"})
    _expect(write_config, r"d.jsonl: no column 'y' \(data.label_field\)",
            **{"data.source": str(src), "data.label_field": "y"})


def test_empty_text_names_the_row(write_config, tmp_path):
    rows = _rows(60)
    rows[16]["text"] = "   "
    src = write_rows(tmp_path / "d.jsonl", rows)
    _expect(write_config, "d.jsonl: row 17: empty or missing text", **{"data.source": str(src)})


def test_label_missing_from_train(write_config, tmp_path):
    folder = tmp_path / "ds"
    write_rows(folder / "train.jsonl", _rows(60, labels=("a", "b")))
    write_rows(folder / "valid.jsonl", _rows(6, labels=("a", "b")))
    test = _rows(6, labels=("a", "b"))
    test[4]["label"] = "zebra"
    write_rows(folder / "test.jsonl", test)
    _expect(write_config, "test.jsonl: row 5: label 'zebra' in the test split does not occur in the train split",
            **{"data.source": str(folder)})


def test_size_larger_than_train(write_config):
    _expect(write_config, r"size 5000 is larger than the train split \(480 rows", **{"data.sizes": [10, 5000]})


def test_duplicate_sizes_rejected_by_config(write_config):
    from fewshot.errors import ConfigError
    with pytest.raises(ConfigError, match=r"duplicate sizes \[10\]"):
        load_config(write_config({"data.sizes": [10, 30, 10]}))


def test_class_too_small_to_stratify(write_config, tmp_path):
    rows = _rows(60, labels=("a", "b"))
    rows.append({"text": "lonely document", "label": "rare"})
    src = write_rows(tmp_path / "d.csv", rows)
    _expect(write_config, "d.csv: label 'rare' has 1 row\\(s\\), too few to stratify", **{"data.source": str(src)})
    # with stratify off the same file builds
    cfg = load_config(write_config({"data.source": str(src), "data.stratify": False, "data.sizes": [5]}))
    build(cfg)


def test_failed_build_leaves_no_files(write_config, tmp_path):
    rows = _rows(60)
    rows[59]["text"] = ""
    src = write_rows(tmp_path / "d.jsonl", rows)
    cfg = _expect(write_config, "row 60", **{"data.source": str(src)})
    out = Path(cfg.data.out_dir)
    assert not out.exists() or not any(out.iterdir())


def test_synthetic_is_imbalanced_and_deterministic():
    a, b = synthetic_data.generate(2000), synthetic_data.generate(2000)
    assert a == b
    counts = Counter(r["label"] for r in a)
    assert counts.most_common(1)[0][0] in ("Physics", "Electricity")
    assert counts["Textiles; Paper"] < counts["Fixed Constructions"] < counts["Physics"]
    words = [len(r["text"].split()) for r in a]
    assert 40 <= min(words) and max(words) <= 121


def test_build_llm_data_notebook_runs_headless(write_config, tmp_path):
    from fewshot.notebooks import execute
    cfg_path = write_config()
    execute("build_llm_data.ipynb", {"CONFIG": str(cfg_path), "OVERRIDES": ["data.sizes=[5,15]"]},
            out_path=tmp_path / "executed.ipynb", cwd=".")
    out = Path(load_config(cfg_path).data.out_dir)
    assert (out / "llm_train_15.json").exists() and (out / "manifest.json").exists()
    text = (tmp_path / "executed.ipynb").read_text()
    assert "--- system" in text and "Classify the document" in text


def test_cli_data_step_on_a_user_jsonl(tmp_path):
    import subprocess
    import sys
    src = write_rows(tmp_path / "mine.jsonl", _rows(400))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fewshot", "data", "--config", "configs/demo.yaml", "--set", f"data.source={src}",
           "--set", "data.text_field=text", "--set", "data.label_field=label", "--set", "data.audit=quick",
           "--set", f"data.out_dir={out}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    sizes = load_config("configs/demo.yaml").data.sizes
    assert "labels" in res.stdout and (out / f"llm_train_{max(sizes)}.json").exists()
    bad = subprocess.run(cmd[:-2] + ["--set", "data.label_field=nope", "--set", f"data.out_dir={out}"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no column 'nope' (data.label_field)" in bad.stderr
    assert "Traceback" not in bad.stderr


# ---------------------------------------------------------------- the shipped real set

def test_debian_snapshot_keeps_each_source_package_in_one_split():
    import gzip
    from fewshot.corpus import debian_sections as deb
    rows = [json.loads(x) for x in gzip.open(deb.SNAPSHOT, "rt", encoding="utf-8")]
    splits: dict[str, set] = {}
    for r in rows:
        splits.setdefault(r["source"], set()).add(r["split"])
    assert all(len(v) == 1 for v in splits.values())  # siblings (foo, foo-data) never straddle splits
    assert len(rows) > 4000 and len({r["text"] for r in rows}) == len(rows)
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == set(deb.SECTIONS)
    assert counts.most_common(1)[0][0] == "science" and min(counts.values()) < 0.05 * len(rows)  # imbalanced
    assert Counter(r["split"] for r in rows)["train"] > 2000


def test_debian_default_builds_with_token_counts_and_nothing_cut(write_config):
    from fewshot.corpus.debian_sections import SECTIONS
    cfg, m = _build(write_config, **{"data.source": "debian", "data.sizes": [16, 48], "data.eval_size": 60})
    assert m["labels"] == SECTIONS and m["origin"]["test"] == "debian[test]"
    assert m["split_rows"]["train"] > 3000 and m["split_rows"]["test"] > 300
    for name, meta in m["files"].items():
        t = meta["tokens"]
        assert 0 < t["min"] <= t["median"] <= t["p95"] <= t["max"] <= cfg.train.cutoff_len, name
        assert t["truncated"] == 0 and t["max_prompt"] < t["max"]
    rows = _load(cfg, "llm_train_48")
    assert all(r["output"] in SECTIONS for r in rows)


def test_debian_rebuild_from_apt_lists(tmp_path):
    from fewshot.corpus import debian_sections as deb
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "x_dists_bookworm_main_binary-amd64_Packages").write_text(
        "Package: foo\nSection: games\nDescription-md5: 1\n\n"
        "Package: foo-data\nSource: foo (1.0)\nSection: games\nDescription-md5: 2\n\n"
        "Package: bar-utils\nSource: bar\nSection: math\nDescription-md5: 3\n\n"
        "Package: oldbar\nSource: bar\nSection: math\nDescription-md5: 4\n\n"
        "Package: kern\nSection: kernel\nDescription-md5: 5\n")
    (lists / "x_dists_bookworm_main_i18n_Translation-en").write_text(
        "Package: foo\nDescription-md5: 1\nDescription-en: Space shooter\n A fast game.\n .\n Two players.\n\n"
        "Package: foo-data\nDescription-md5: 2\nDescription-en: data for foo\n Levels.\n\n"
        "Package: bar-utils\nDescription-md5: 3\nDescription-en: solver tools.\n Linear algebra.\n\n"
        "Package: oldbar\nDescription-md5: 4\nDescription-en: transitional package\n Gone.\n\n"
        "Package: kern\nDescription-md5: 5\nDescription-en: kernel\n Not topical.\n")
    rows = deb.rebuild(str(lists))
    assert [(r["source"], r["package"], r["label"], r["text"]) for r in rows] == [
        ("bar", "bar-utils", "math", "solver tools. Linear algebra."),
        ("foo", "foo", "games", "Space shooter. A fast game. Two players.")]  # one row per (source, section)
    assert all(r["split"] == deb.split_of(r["source"]) for r in rows)


def test_rows_longer_than_cutoff_fail_naming_the_row_and_the_flags(write_config):
    with pytest.raises(DataError, match=r"(?s)longer than train.cutoff_len=120 tokens.*llm_train_\d+\.json row \d+.*"
                                        r"data.max_tokens"):
        _build(write_config, **{"train.cutoff_len": 120})


def test_max_tokens_cuts_documents_the_same_way_in_every_file(write_config):
    cfg, m = _build(write_config, **{"train.cutoff_len": 200, "data.max_tokens": 150})
    for name, meta in m["files"].items():
        assert meta["tokens"]["max"] <= 150, name
    assert sum(meta["tokens"]["truncated"] for meta in m["files"].values()) > 0
    small, big = _load(cfg, "llm_train_10"), _load(cfg, "llm_train_30")
    assert {r["input"] for r in small} <= {r["input"] for r in big}  # nested subsets stay nested after the cut
    assert all(r["input"].startswith(INPUT_PREFIX) for r in big)


def test_the_own_data_config_keeps_repeated_rows_out_of_test(tmp_path):
    """configs/own.yaml (the README's starting point for a person's file): a file whose rows repeat gets
    no test row identical to a train row, and the LLM has three seeds."""
    rows = text_rows(300, words=10)
    rows += [dict(r) for r in rows[:60]]  # 60 rows given twice
    src = write_rows(tmp_path / "rows.csv", rows)
    cfg = load_config("configs/own.yaml", [f"data.source={src}", f"data.out_dir={tmp_path / 'data'}",
                                           "data.audit=quick"])
    assert len(cfg.data.seeds) >= 3 and cfg.data.duplicates == "group"
    build(cfg)
    train = {r["text"] for r in json.loads((tmp_path / "data" / "train_rows.json").read_text())}
    test = [r["input"] for r in json.loads((tmp_path / "data" / "llm_test.json").read_text())]
    assert test and not any(t.split("\n", 1)[1] in train for t in test)
