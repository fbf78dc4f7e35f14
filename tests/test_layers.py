"""Import direction between layers, read from the source with `ast` (nothing is imported)."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import invdesign

PACKAGE_DIR = Path(invdesign.__file__).resolve().parent
HEAVY_FOR_MODELS = ("pymatgen", "ase", "rdkit", "wandb")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """Absolute module named by a (possibly relative) `from ... import`."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> every module it imports (top level and inside functions), absolute names.

    `from pkg import name` records both `pkg` and `pkg.name` (the name may be a submodule).
    """
    graph = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = _module_name(path)
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(node, module, path.name == "__init__.py")
                imported.add(target)
                imported.update(f"{target}.{alias.name}" for alias in node.names)
        graph[module] = frozenset(imported)
    return graph


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} imports {name}"
                  for module, names in import_graph().items() if _in(module, layer)
                  for name in names if any(_in(name, f) for f in forbidden))


def test_graph_covers_the_layers():
    modules = import_graph()
    for layer in ("invdesign.properties", "invdesign.data", "invdesign.featurize",
                  "invdesign.models", "invdesign.train", "invdesign.cli"):
        assert any(_in(m, layer) for m in modules), f"{layer} not found under {PACKAGE_DIR}"
    # the resolver understands the relative imports used in invdesign.properties
    assert "invdesign.properties.registry" in modules["invdesign.properties.objective"]


def test_properties_is_the_bottom_layer():
    own = [name for module, names in import_graph().items()
           if _in(module, "invdesign.properties")
           for name in names if _in(name, "invdesign") and not _in(name, "invdesign.properties")]
    assert not own, f"invdesign.properties imports other invdesign modules: {own}"
    assert not _violations("invdesign.properties", ("torch", "pymatgen"))


def test_data_has_no_torch_and_no_higher_layers():
    assert not _violations("invdesign.data", (
        "torch", "invdesign.featurize", "invdesign.models", "invdesign.train",
        "invdesign.surrogate", "invdesign.cli"))


def test_featurize_does_not_import_models_or_training():
    assert not _violations("invdesign.featurize", (
        "invdesign.models", "invdesign.train", "invdesign.surrogate", "invdesign.cli"))


def test_models_are_pure_torch():
    assert not _violations("invdesign.models", (
        *HEAVY_FOR_MODELS, "invdesign.data", "invdesign.train", "invdesign.surrogate",
        "invdesign.cli"))


def test_validity_and_evaluate_have_no_torch_and_no_models():
    for layer in ("invdesign.validity", "invdesign.evaluate"):
        assert not _violations(layer, (
            "torch", "invdesign.models", "invdesign.train", "invdesign.surrogate",
            "invdesign.oracle", "invdesign.cli"))


def test_oracle_does_not_import_models_or_training():
    assert not _violations("invdesign.oracle", (
        "invdesign.models", "invdesign.train", "invdesign.surrogate", "invdesign.validity",
        "invdesign.cli"))


def test_train_does_not_import_cli():
    assert not _violations("invdesign.train", ("invdesign.cli",))


def test_nothing_imports_the_cli():
    users = sorted(module for module, names in import_graph().items()
                   if module != "invdesign.cli" and any(_in(n, "invdesign.cli") for n in names))
    assert not users, f"only the command line may import invdesign.cli, found: {users}"


@pytest.mark.parametrize("module", ["invdesign", "invdesign.properties", "invdesign.data",
                                    "invdesign.validity"])
def test_light_imports_do_not_load_torch(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('torch', 'wandb', 'rdkit') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]", f"import {module} loaded {result.stdout.strip()}"
