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
