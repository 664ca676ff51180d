"""The engine is a library: it never imports the UI toolkit or the app."""
import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_engine_module_imports_gradio_or_app():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 5
    offenders = {str(f.relative_to(ENGINE)): r & {"gradio", "gradio_client", "app"}
                 for f in files if (r := imported_roots(f)) & {"gradio", "gradio_client", "app"}}
    assert offenders == {}


ROOT = ENGINE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_imports(path: Path) -> set[str]:
    """The engine modules `path` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out, tree = set(), ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "engine"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "engine":
                continue
            for a in node.names:  # `from pkg import module` names a module
                sub = f"{target}.{a.name}"
                out.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).is_file() else target)
    return out


def engine_graph() -> dict[str, set[str]]:
    graph = {module_name(f): engine_imports(f) for f in sorted(ENGINE.rglob("*.py"))}
    return {m: {d for d in deps if d in graph and d != m and not m.startswith(d + ".") and d != "engine"}
            for m, deps in graph.items() if m != "engine"}


def test_the_engine_has_no_import_cycle():
    graph, state, cycles = engine_graph(), {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_app_benchmarks_and_scripts_use_only_the_engine_public_api():
    import engine

    public = set(engine.__all__)
    offenders = []
    files = [ROOT / "launch.py", *(f for d in ("app", "benchmarks", "scripts") for f in sorted((ROOT / d).rglob("*.py")))]
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("engine"):
                bad = [a.name for a in node.names if node.module != "engine" or a.name not in public]
                offenders += [f"{f.relative_to(ROOT)}: from {node.module} import {n}" for n in bad]
            elif isinstance(node, ast.Import):
                offenders += [f"{f.relative_to(ROOT)}: import {a.name}" for a in node.names
                              if a.name.startswith("engine.")]
    assert offenders == []
