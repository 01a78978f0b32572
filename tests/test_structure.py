"""The package's shape: steps side by side (no step reaches another step, directly or through a
shared module) and no import cycle. Read from the source with ast, function-level imports included."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "fewshot"
STEPS = {"data", "train", "eval", "baselines", "curve", "report"}
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
