"""croft's packages read bottom-up: none imports one above it (docs/architecture.md draws the
order). Every import counts, those inside functions too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import croft

# Bottom first. Modules of one layer may import each other; none imports a later layer.
ORDER = [
    {"errors", "tools", "run", "wait", "inplace", "lan", "layout", "nocloud", "agent", "alerts"},
    {"site"},
    {"systemd"},
    {"repository"},
    {"build"},
    {"deploy"},
    {"pipeline", "snapshots", "vpn", "logs"},
    {"images"},
    {"daily"},
    {"workflows"},
    {"serve"},
    {"lab"},
    {"fleet"},
    {"ui"},
    {"commands"},
    {"cli", "__main__"},
]
SOURCE = Path(croft.__file__).parent


def layer_of(package: str) -> int:
    for index, layer in enumerate(ORDER):
        if package in layer:
            return index
    raise AssertionError(f"croft.{package} is in no layer of ORDER: add it where it belongs")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, croft package) of every import of croft in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "croft":
                found += [(node.lineno, alias.name) for alias in node.names]
            elif node.module.startswith("croft."):
                found.append((node.lineno, node.module.split(".")[1]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("croft.")]
    return found


def test_no_package_imports_one_above_it() -> None:
    wrong = []
    for path in sorted(SOURCE.rglob("*.py")):
        package = path.relative_to(SOURCE).parts[0].removesuffix(".py")
        if package == "__init__":
            continue
        for line, imported in imports(path):
            if imported != package and layer_of(imported) > layer_of(package):
                wrong.append(f"{path.relative_to(SOURCE.parent)}:{line}: {package} imports {imported}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_every_package_has_a_layer() -> None:
    packages = {path.name.removesuffix(".py") for path in SOURCE.iterdir() if path.suffix == ".py"}
    packages |= {path.name for path in SOURCE.iterdir() if (path / "__init__.py").exists()}
    packages.discard("__init__")
    for package in sorted(packages):
        layer_of(package)
