"""The ML package holds the ML code alone: no module of it imports the operations package
(which imports it), so the model code runs, and is tested, without the deploy machinery."""

import ast
from pathlib import Path

import {{ cookiecutter.package_name }}
import {{ cookiecutter.__ops_package_name }}

ML_PACKAGE = Path({{ cookiecutter.package_name }}.__file__).parent
OPS_PACKAGE = Path({{ cookiecutter.__ops_package_name }}.__file__).parent
# Calls that import a module named by a string.
IMPORT_CALLS = {"import_module", "__import__"}


def imported_modules(path: Path, package_root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file of the package at package_root,
    relative imports resolved, and of every import_module("...") or __import__("...")."""
    parts = path.relative_to(package_root.parent).with_suffix("").parts
    package = parts if path.name == "__init__.py" else parts[:-1]
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            name = ".".join([*base, *([node.module] if node.module else [])])
            modules.append((node.lineno, name))
            modules.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            called = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if called in IMPORT_CALLS and node.args and isinstance(node.args[0], ast.Constant):
                modules.append((node.lineno, str(node.args[0].value)))
    return modules


def imports_of(package_root: Path, target: str) -> list[str]:
    """`file:line imports module` for every import of the target package in a package."""
    return [
        f"{path.relative_to(package_root.parent)}:{line} imports {module}"
        for path in sorted(package_root.rglob("*.py"))
        for line, module in imported_modules(path, package_root)
        if module == target or module.startswith(f"{target}.")
    ]


def test_the_ml_package_never_imports_the_operations_package():
    assert imports_of(ML_PACKAGE, OPS_PACKAGE.name) == []


def test_the_scan_sees_the_imports_it_looks_for():
    # The operations package imports the ML package, absolutely and in functions.
    found = imports_of(OPS_PACKAGE, ML_PACKAGE.name)
    assert any(f"imports {ML_PACKAGE.name}.config" in line for line in found)
    assert any(f"imports {ML_PACKAGE.name}.pipeline.get_pipeline" in line for line in found)
    # A relative import inside the ML package resolves to the ML package.
    steps = imports_of(ML_PACKAGE, f"{ML_PACKAGE.name}.steps")
    assert any(not line.startswith(f"{ML_PACKAGE.name}/steps/") for line in steps)


def test_relative_and_dynamic_imports_are_resolved(tmp_path):
    package = tmp_path / "model_code"
    (package / "steps").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps" / "train.py").write_text(
        "from .. import local\nfrom . import schema\nimport importlib\n"
        "importlib.import_module('model_code_ops.deploy')\n"
    )
    assert imports_of(package, "model_code_ops") == [
        "model_code/steps/train.py:4 imports model_code_ops.deploy"
    ]
    assert imports_of(package, "model_code.local") == [
        "model_code/steps/train.py:1 imports model_code.local"
    ]
