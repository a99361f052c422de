"""Dependency direction (DESIGN.md): analysis imports neither torch nor ray; models imports no ray.

Checked on the source (every import statement, nested ones included) and at run time (importing
the package pulls in no forbidden module), so a lazy import inside a function is caught too.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"analysis": {"torch", "ray"}, "models": {"ray"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_source_imports_respect_layering(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in sorted((ROOT / "scaling_orchestrator" / package).rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_package_modules_loads_no_forbidden_module(package):
    pkg = ROOT / "scaling_orchestrator" / package
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in sorted(pkg.rglob("*.py"))
               if p.stem not in ("__init__", "__main__")]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(r for r in {sorted(FORBIDDEN[package])!r} if r in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"importing {package}/ loaded {out.stdout.strip()}"


# analysis/ in layers, lowest first: a module imports only from its own subpackage or from a
# layer before its own (so report/ never reaches back into the pipeline that writes it).
ANALYSIS_LAYERS = (
    ("errors", "numerics"),
    ("data",),
    ("laws",),
    ("methods",),
    ("judge",),
    ("report",),
    ("design",),
    ("options", "fit_json"),
    ("result",),
    ("pipeline", "predict"),
)
# The one kind of import allowed inside a function, with a comment saying why: matplotlib (or
# report/plots.py, which imports it), loaded only when a figure is drawn.
LAZY_OK = {"matplotlib", "scaling_orchestrator.analysis.report.plots"}


def _analysis_modules():
    pkg = ROOT / "scaling_orchestrator" / "analysis"
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(pkg).with_suffix("").parts
        yield path, parts[0]


def test_analysis_imports_only_downward():
    rank = {name: i for i, layer in enumerate(ANALYSIS_LAYERS) for name in layer}
    upward = []
    for path, home in _analysis_modules():
        if home == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            inside = isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "scaling_orchestrator.analysis.")
            if inside:
                target = node.module.split(".")[2]
                if target != home and not rank[target] < rank[home]:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} {home} -> {target}")
    assert not upward, upward


def test_analysis_imports_at_module_level():
    nested = []
    for path, home in _analysis_modules():
        if home == "__init__":   # loads fit / FitResult on first use (PEP 562), said in its docstring
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                lazy_ok = all(n in LAZY_OK or n.split(".")[0] in LAZY_OK for n in names)
                commented = any("#" in line for line in lines[node.lineno - 2:node.end_lineno])
                if not (lazy_ok and commented):
                    nested.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert not nested, nested
