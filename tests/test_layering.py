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


@pytest.mark.slow  # a Python subprocess each
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
