"""Which rows: every strategy's orders nest, read no label they did not buy, and the data step
writes one subset family per strategy, recorded in the manifest."""
import json
from pathlib import Path

import numpy as np
import pytest

from fewshot.config import load_config
from fewshot.selection import LabelLeak, LabelOracle, order, typical, uncertain


def _blobs(n=300, k=5, dim=16, seed=0):
    """k Gaussian clusters of unequal size, unit-normalised like sentence embeddings; label = cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    sizes = np.array([0.4, 0.25, 0.15, 0.12, 0.08][:k]) * n
    lab = np.repeat(np.arange(k), sizes.astype(int))
    x = centres[lab] + rng.normal(size=(len(lab), dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), [f"c{i}" for i in lab]


@pytest.mark.parametrize("strategy", ["random", "typical", "uncertain"])
def test_each_strategy_orders_distinct_rows_and_its_budgets_nest(strategy):
    """The order for sizes [8, 24] starts with the order for [8] alone: the 8-row subset is the same
    whether or not a larger size is asked for, so the subsets nest (8 inside 24)."""
    emb, labels = _blobs()
    one = order(strategy, n_rows=len(labels), sizes=[8], seed=3, oracle=LabelOracle(labels), embed=lambda: emb)
    two = order(strategy, n_rows=len(labels), sizes=[8, 24], seed=3, oracle=LabelOracle(labels), embed=lambda: emb)
    assert len(two) >= 24 and len(set(two)) == len(two)
    assert two[:8] == one[:8]
    other = order(strategy, n_rows=len(labels), sizes=[8, 24], seed=4, oracle=LabelOracle(labels), embed=lambda: emb)
    assert other[:24] != two[:24]  # another selection seed is another order


def test_typical_covers_the_clusters_before_repeating_one():
    """TypiClust's point: at a budget of 5 on 5 clusters it takes one row of each, where random rows
    would most likely miss the smallest."""
    emb, labels = _blobs()
    first = typical.order(emb, [5], seed=0, length=5)
    assert len({labels[i] for i in first}) == 5


def test_uncertain_reads_only_labels_of_rows_it_bought():
    """Its labels come through the oracle; every label read belongs to a row of a subset that was
    complete before the round that used it (never the last round's rows, never an unbought row)."""
    emb, labels = _blobs()
    oracle = LabelOracle(labels)
    got = uncertain.order(emb, [8, 16, 40], seed=0, oracle=oracle, length=40)
    assert oracle.read and oracle.read <= set(got[:16])
    assert not oracle.reads_all


def test_a_strategy_that_reads_an_unbought_label_is_stopped(monkeypatch):
    """The guard itself: a proxy that peeks at one row outside the bought ones fails the selection."""
    emb, labels = _blobs()
    oracle = LabelOracle(labels)
    real = uncertain.diverse

    def peeking(e, cand, q, seed):
        oracle.labels([int(cand[-1])])  # an unbought candidate's label
        return real(e, cand, q, seed)
    monkeypatch.setattr(uncertain, "diverse", peeking)
    with pytest.raises(LabelLeak, match="had not bought"):
        uncertain.order(emb, [8, 16], seed=0, oracle=oracle, length=16)


def test_typical_reads_no_label_and_random_says_it_reads_all():
    emb, labels = _blobs()
    o = LabelOracle(labels)
    order("typical", n_rows=len(labels), sizes=[8], seed=0, oracle=o, embed=lambda: emb)
    assert not o.read
    o = LabelOracle(labels)
    order("random", n_rows=len(labels), sizes=[8], seed=0, oracle=o, stratify=True)
    assert o.reads_all and len(o.read) == len(labels)


def test_continuing_an_order_keeps_the_bought_rows_first():
    """The labelling plan ranks the next rows by continuing the order its subsets came from."""
    emb, labels = _blobs()
    base = order("typical", n_rows=len(labels), sizes=[8, 16], seed=1, oracle=LabelOracle(labels), embed=lambda: emb)
    more = order("typical", n_rows=len(labels), sizes=[8, 16, 30], seed=1, oracle=LabelOracle(labels),
                 embed=lambda: emb, length=30, start=base[:16])
    assert more[:16] == base[:16] and len(set(more[:30])) == 30


def test_data_step_writes_nested_subsets_per_strategy(write_config):
    """Each strategy gets its own nested files (llm_train_10_typical inside llm_train_30_typical), the
    random ones are unchanged by adding a strategy, and the manifest says what each strategy read."""
    from fewshot.data import build
    plain = load_config(write_config({"data.sizes": [10, 30]}, name="plain.yaml"))
    build(plain)
    rand = json.loads((Path(plain.data.out_dir) / "llm_train_30.json").read_text())
    cfg = load_config(write_config({"data.sizes": [10, 30], "data.selection": ["random", "typical", "uncertain"],
                                    "data.out_dir": str(Path(plain.data.out_dir).parent / "data2")}, name="sel.yaml"))
    man = build(cfg)
    load = lambda n: {r["input"] for r in json.loads((Path(cfg.data.out_dir) / f"{n}.json").read_text())}
    for sel in ("typical", "uncertain"):
        assert load(f"llm_train_10_{sel}") <= load(f"llm_train_30_{sel}")
        assert man["files"][f"llm_train_30_{sel}"]["selection"] == sel
    assert json.loads((Path(cfg.data.out_dir) / "llm_train_30.json").read_text()) == rand
    assert man["selection"]["typical"]["labels_read"] == {"0": 0}
    assert 0 < man["selection"]["uncertain"]["labels_read"]["0"] <= 10
    assert man["selection"]["random"]["reads"].startswith("every train label")
    order30 = man["selection"]["typical"]["orders"]["0"]
    assert len(order30) == 30 and len(set(order30)) == 30


def test_selection_config_is_checked(write_config):
    from fewshot.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown strategy 'typicl'"):
        load_config(write_config({"data.selection": ["random", "typicl"]}))
    with pytest.raises(ConfigError, match="must list 'random'"):
        load_config(write_config({"data.selection": ["typical"]}))
    with pytest.raises(ConfigError, match="data.selection_methods"):
        load_config(write_config({"data.selection_methods": ["svm"]}))
    with pytest.raises(ConfigError, match="plan.target"):
        load_config(write_config({"plan.target": 80}))


TOY = '''"""A test's strategy: the last train rows first."""
from . import Strategy

STRATEGY = Strategy("toy_last", reads="no label", rank=90, colour="#2ca02c",
                    order=lambda c: list(c.start) + [i for i in range(c.n_rows - 1, -1, -1) if i not in set(c.start)])
'''


def test_a_new_strategy_is_one_module(write_config):
    """A toy strategy written as one new module of fewshot/selection/ (and named in the config) runs through
    the data step, TF-IDF and the report: its run names, curve key, words and colour come from its
    Strategy, with no other file edited."""
    import sys
    from fewshot.baselines import run_all
    from fewshot.curve_step import run as curve_step
    from fewshot.data import build
    from fewshot.report import render
    from fewshot.selection import get
    mod = Path(__file__).resolve().parent.parent / "fewshot" / "selection" / "toy_last_rows.py"
    mod.write_text(TOY)
    try:
        cfg = load_config(write_config({"data.sizes": [10, 30, 90], "data.selection": ["random", "toy_last"],
                                        "data.selection_methods": ["tfidf"], "baselines.methods": ["tfidf"],
                                        "plan.method": "tfidf", "report.curve_bootstrap": 20, "eval.bootstrap": 20}))
        man = build(cfg)
        assert man["selection"]["toy_last"]["reads"] == "no label"
        rows = json.loads((Path(cfg.data.out_dir) / "llm_train_10_toy_last.json").read_text())
        assert len(rows) == 10 and man["files"]["llm_train_10_toy_last"]["selection"] == "toy_last"
        assert run_all(cfg) == 0
        objs = Path(cfg.eval.out_dir)
        assert {f"tfidf_{k}_toy_last_s0" for k in (10, 30, 90)} <= {p.stem for p in objs.glob("*.json")}
        assert curve_step(cfg) == 0 and render(cfg) == 0
        res = json.loads((Path(cfg.report.out_dir) / "labels_needed.json").read_text())
        assert any(f["method"] == "tfidf@toy_last" and f["status"] == "ok" for f in res["fits"])
        html = (Path(cfg.report.out_dir) / "report.html").read_text()
        assert "TF-IDF + LogReg, toy_last rows" in html and "Traceback" not in html
        assert (Path(cfg.report.out_dir) / "selection_curves.png").stat().st_size > 10_000
        assert get("toy_last").colour == "#2ca02c"
    finally:
        mod.unlink()
        sys.modules.pop("fewshot.selection.toy_last_rows", None)


def test_embeddings_are_cached_per_precision():
    """bf16 vectors are not served to an fp32 study, nor the other way; fp32 keeps the key it had."""
    import hashlib
    import json
    from fewshot.embeddings import MAX_TOKENS, texts_key
    texts = ["a text", "another"]
    old = hashlib.sha256(json.dumps(["enc", MAX_TOKENS, texts]).encode()).hexdigest()[:16]
    assert texts_key(texts, "/x/enc") == texts_key(texts, "/x/enc", "fp32") == old
    assert texts_key(texts, "/x/enc", "bf16") != old
