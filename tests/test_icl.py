"""In-context learning: the request the server receives, and how demonstrations are chosen."""
import json
import sys

from conftest import ROOT
from fewshot.client import score
from fewshot.icl import choose_demos
from fewshot.prompt import alpaca_row, build_instruction
from fewshot.serve import VLLMServer, free_port

LABELS = ["Physics", "Chemistry", "Electricity"]


def test_icl_request_is_system_then_demonstrations_in_order_then_the_row(tmp_path, monkeypatch):
    ins = build_instruction(LABELS)
    demos = [alpaca_row(ins, f"demo text {i}", LABELS[i % 3]) for i in range(5)]
    rows = [alpaca_row(ins, f"row to classify {i}", LABELS[i % 3]) for i in range(8)]
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv("FAKE_REQUESTS", str(log))
    port = free_port()
    with VLLMServer([sys.executable, str(ROOT / "tests" / "fake_openai.py"), str(port), "good"], port,
                    tmp_path / "fake.log", 20) as url:
        st = score(url, "base", rows, LABELS, tmp_path / "p.jsonl", concurrency=4, progress=False, demos=demos)
    assert st["scored"] == 8
    reqs = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(reqs) == 8
    seen_rows = set()
    for r in reqs:
        m = r["messages"]
        assert [x["role"] for x in m] == ["system"] + ["user", "assistant"] * 5 + ["user"]
        assert m[0]["content"] == ins
        assert [x["content"] for x in m[1:-1:2]] == [d["input"] for d in demos]       # demonstrations, in order
        assert [x["content"] for x in m[2:-1:2]] == [d["output"] for d in demos]      # each answered by its label
        seen_rows.add(m[-1]["content"])
        assert m[:-1] == reqs[0]["messages"][:-1]  # the same prefix for every row of the run
    assert seen_rows == {r["input"] for r in rows}


def _subset(labels):
    return [{"input": f"d{i}", "output": lab} for i, lab in enumerate(labels)]


def test_all_demonstrations_when_they_fit_the_budget():
    demos = _subset(["a", "b", "a", "c"])
    assert choose_demos(demos, [10, 10, 10, 10], budget=40) == [0, 1, 2, 3]


def test_a_subset_that_does_not_fit_is_cut_class_by_class_deterministically():
    labels = ["a"] * 6 + ["b"] * 3 + ["c"]
    demos = _subset(labels)
    costs = [10] * 10
    got = choose_demos(demos, costs, budget=45)
    assert got == choose_demos(demos, costs, budget=45)          # deterministic
    assert sum(costs[i] for i in got) <= 45 and len(got) == 4     # k follows the budget
    assert {demos[i]["output"] for i in got} == {"a", "b", "c"}   # every class before any class twice
    assert got == sorted(got)                                     # kept in the subset's order
    # a long row of a class is skipped for that class's next row, not for the whole class
    costs = [10, 10, 10, 10, 10, 10, 40, 10, 10, 10]
    got = choose_demos(demos, costs, budget=30)
    assert [demos[i]["output"] for i in got] == ["a", "b", "c"] and 6 not in got


def test_icl_runs_come_in_pairs_and_the_same_demonstrations_are_one_point(write_config):
    """A budget that fits only the first row: subsets of 10 and 30 rows (nested, same order) show the
    very same demonstration, so they are one measurement, scored free and label-constrained once."""
    import pytest
    from fewshot.config import load_config, override
    from fewshot.data import build
    from fewshot.icl import demo_costs, icl_runs
    from fewshot.tokens import tokenizer
    if not (ROOT / "models" / "SmolLM2-135M-Instruct" / "config.json").exists():
        pytest.skip("model folder missing: run bash setup.sh")
    cfg = load_config(write_config({"eval.icl": True}))
    build(cfg)
    rows = json.loads((ROOT / cfg.data.out_dir / "llm_train_10.json").read_text())
    probe = json.loads((ROOT / cfg.data.out_dir / "llm_valid.json").read_text())[0]
    first = demo_costs(tokenizer(cfg.model.name_or_path), rows[:1], probe)[0]
    runs = icl_runs(override(cfg, [f"eval.icl_max_tokens={first}"]))
    assert [(r.name, r.constrained, r.method) for r in runs] == [
        ("icl_10", False, "llm_icl"), ("icl_10_constrained", True, "llm_icl_constrained")]
    info = runs[0].icl
    assert info is runs[1].icl and info["k"] == 1 and info["budget_sets_k"] and info["same_for"] == [30]
    # with room for every row, each subset is its own point
    runs = icl_runs(override(cfg, ["eval.icl_max_tokens=100000"]))
    assert [r.name for r in runs] == ["icl_10", "icl_10_constrained", "icl_30", "icl_30_constrained"]
    assert [r.icl["k"] for r in runs[::2]] == [10, 30] and not runs[0].icl["budget_sets_k"]
    # eval.icl_sizes / eval.icl_free: only the sizes asked for, label-constrained only; the eval
    # step's list of runs (eval_names) names exactly the runs icl_runs builds
    from fewshot.runs import eval_names
    small = override(cfg, ["eval.icl_max_tokens=100000", "eval.icl_sizes=[30]", "eval.icl_free=false"])
    runs = icl_runs(small)
    assert [(r.name, r.constrained) for r in runs] == [("icl_30_constrained", True)]
    assert [n for n in eval_names(small) if n.startswith("icl_")] == ["icl_30_constrained"]
    smallest = override(cfg, ["eval.icl_max_tokens=100000", "eval.icl_sizes=smallest"])
    assert [r.name for r in icl_runs(smallest)] == ["icl_10", "icl_10_constrained"]
    assert [n for n in eval_names(smallest) if n.startswith("icl_")] == ["icl_10", "icl_10_constrained"]


def test_icl_sizes_must_be_sizes_of_the_config(write_config):
    import pytest
    from fewshot.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"eval.icl_sizes.*\[20\].*not in 'data.sizes'"):
        load_config(write_config({"eval.icl": True, "eval.icl_sizes": [20]}))
    with pytest.raises(ConfigError, match=r"eval.icl_sizes.*all, smallest"):
        load_config(write_config({"eval.icl": True, "eval.icl_sizes": "largest"}))
