"""The package's shape: steps side by side (no step reaches another step, directly or through a
shared module) and no import cycle. Read from the source with ast, function-level imports included."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "fewshot"
STEPS = {"data", "train", "eval", "baselines", "curve_step", "report"}
DRIVERS = {"__main__", "sweep", "bench", "curve_bench", "plan_bench", "plan_replay"}  # they run steps, by design


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) or "__init__"


def import_graph() -> dict[str, set[str]]:
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        pkg = name.rsplit(".", 1)[0] if "." in name else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .x import y / from . import x
                    base = pkg.split(".")[: max(0, len(pkg.split(".")) - node.level + 1)] if pkg else []
                    target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                elif node.module and node.module.startswith("fewshot"):
                    target = node.module[len("fewshot."):] if node.module != "fewshot" else ""
                else:
                    continue
                cands = [f"{target}.{a.name}" if target else a.name for a in node.names] + [target]
                deps |= {c for c in cands if c in mods}
            elif isinstance(node, ast.Import):
                deps |= {a.name[len("fewshot."):] for a in node.names if a.name[len("fewshot."):] in mods}
        graph[name] = deps - {name}
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_step_reaches_another_step():
    graph = import_graph()
    assert STEPS <= set(graph) and DRIVERS <= set(graph)
    for step in STEPS:
        seen, todo = set(), list(graph[step])
        while todo:  # through shared modules, never through a step
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            assert m not in STEPS, f"step {step} imports step {m}"
            assert m not in DRIVERS, f"step {step} imports {m}"
            todo += graph[m]


def test_what_runs_in_the_training_env_reaches_no_main_env_module():
    """fewshot/train_env/ runs under .venv-train, which lacks the main env's packages: it may use
    only our dependency-free prompt module, and nothing that module reaches."""
    graph = import_graph()
    mods = [m for m in graph if m.startswith("train_env")]
    assert {"train_env.lf_train", "train_env.lf_generate", "train_env.convert_gguf"} <= set(mods)
    seen, todo = set(), list(mods)
    while todo:
        m = todo.pop()
        for d in graph[m] - seen:
            seen.add(d)
            todo.append(d)
    assert seen - set(mods) <= {"prompt"}, sorted(seen - set(mods))


# ---------------------------------------------------------------- the notebooks are steps too

ROOT = PKG.parent
NOTEBOOKS = {"build_llm_data.ipynb": "data", "see_result.ipynb": "report"}  # the step each notebook is
# what reading and drawing never calls: fitting, planning, ranking rows, running a step, writing a step's files
WRITES_OR_FITS = {"analyse", "fit", "fit_curve", "make_plan", "rank", "write", "run", "run_all", "render", "build",
                  "atomic_write_json", "atomic_write_text", "atomic_write_bytes", "append_jsonl"}


def notebook_uses(source: str, known: set[str]) -> tuple[set[str], set[str]]:
    """(fewshot modules imported, names called) in a notebook's code; known: the package's modules."""
    mods, calls = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fewshot"):
            target = node.module[len("fewshot."):] if node.module != "fewshot" else ""
            for a in node.names:
                full = f"{target}.{a.name}" if target else a.name
                mods.add(full if full in known else target)  # a module, or a name taken from one
        elif isinstance(node, ast.Import):
            mods |= {a.name[len("fewshot."):] for a in node.names if a.name.startswith("fewshot.")}
        elif isinstance(node, ast.Call):
            f = node.func
            calls.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return mods, calls


def notebook_problems(source: str, step: str) -> list[str]:
    """What breaks "no step runs another step" in a notebook that is `step`; the report reads and draws only."""
    graph, out = import_graph(), []
    mods, calls = notebook_uses(source, set(graph))
    seen, todo = set(), [m for m in mods if m in graph]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m in (STEPS | DRIVERS) - {step}:
            out.append(f"reaches {m}")
            continue
        todo += graph[m]
    if step == "report":
        out += [f"calls {c}()" for c in sorted(calls & WRITES_OR_FITS)]
    return out


def _code(nb: Path) -> str:
    import json
    cells = json.loads(nb.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_notebooks_keep_to_their_step():
    for name, step in NOTEBOOKS.items():
        assert notebook_problems(_code(ROOT / name), step) == [], name


def test_the_notebook_check_catches_a_report_that_fits_or_writes():
    code = _code(ROOT / "see_result.ipynb")
    assert notebook_problems(code + "\nfrom fewshot import curve_step\nfit = curve_step.analyse(cfg.eval.out_dir, [0.7])",
                             "report") == ["reaches curve_step", "calls analyse()"]
    assert notebook_problems(code + "\nW.write(cfg, fit, out)", "report") == ["calls write()"]
    assert notebook_problems(code + "\nfrom fewshot.data import build", "report") == ["reaches data"]
    assert notebook_problems(_code(ROOT / "build_llm_data.ipynb") + "\nfrom fewshot.eval import run_all", "data") \
        == ["reaches eval"]
