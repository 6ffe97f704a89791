"""The package stack stays straight: each package imports only those below it, no
project import hides inside a function below the top, every function-local import
says why it is lazy, and the light layers load without TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: package -> its level; a package may import only packages of a lower level
LEVELS = {"mobilectl.core": 0, "models_keras": 1, "quant": 1, "exporter": 2,
          "device_profiles": 2, "mobilectl": 3}
TOP = "mobilectl"


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["mobilectl", "core"]:
        return "mobilectl.core"
    return parts[0] if parts[0] in LEVELS else None


def _sources() -> list[tuple[Path, str]]:
    found = []
    for top in ("models_keras", "quant", "exporter", "device_profiles", "mobilectl"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found.append((path, module.removesuffix(".__init__")))
    return found


def _imports(tree: ast.AST) -> list[tuple[ast.stmt, str, bool]]:
    """(node, imported module, inside a function) for every absolute import."""
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name, id(node) in inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node, node.module, id(node) in inside))
    return found


def test_each_package_imports_only_packages_below_it() -> None:
    wrong = []
    for path, module in _sources():
        source = _package(module)
        for node, target, _ in _imports(ast.parse(path.read_text())):
            dest = _package(target)
            if dest and dest != source and LEVELS[dest] >= LEVELS[source]:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} ({source}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_function_local_imports_are_lazy_heavy_dependencies_with_a_reason() -> None:
    hidden, silent = [], []
    for path, module in _sources():
        lines = path.read_text().splitlines()
        for node, target, local in _imports(ast.parse("\n".join(lines))):
            if not local:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno} imports {target}"
            if _package(target) and _package(module) != TOP:
                hidden.append(where)
            group = lines[max(0, node.lineno - 4):node.lineno]  # the import or one just above
            if not any("#" in line for line in group):
                silent.append(where)
    assert not hidden, "project imports inside functions below the top:\n" + "\n".join(hidden)
    assert not silent, "lazy imports without a reason:\n" + "\n".join(silent)


def test_light_layers_load_without_tensorflow() -> None:
    code = ("import sys\n"
            "import mobilectl.cli, mobilectl.spec, mobilectl.build, mobilectl.profiling\n"
            "import mobilectl.modelfile, mobilectl.core.cost\n"
            "import device_profiles.harness, exporter.formats, quant.calibration\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnxruntime') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
