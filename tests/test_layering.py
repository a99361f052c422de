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


# -- the orchestrator's layers ---------------------------------------------------------------------
# Each subpackage imports only from those before it (DESIGN.md); the package's own __init__ (the
# lazy API) sits above them, and the CLI above that.
PACKAGE = ROOT / "scaling_orchestrator"
ORCHESTRATOR = PACKAGE / "orchestrator"
LAYERS = ("fmt", "spec", "plan", "store", "designs", "backends", "execution", "__init__", "cli")
# heavy or optional: imported where used
LAZY_ROOTS = {"ray", "torch", "matplotlib", "optuna", "transformers", "mlflow"}
# modules that import torch, and the simulate backend (scipy, with the law forms), which a trial
# process of the built-in loop never needs
LAZY_MODULES = tuple(f"scaling_orchestrator.models.{m}" for m in ("training.loop", "weights", "export")) + (
    "scaling_orchestrator.orchestrator.backends.simulate",)
MAX_MODULES, MAX_LINES = 12, 2000


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if rel.parts[0] == "cli":
        return "cli"
    inner = rel.relative_to("orchestrator")
    return inner.parts[0] if len(inner.parts) > 1 else inner.stem


def imported_modules(node) -> list[str]:
    """Every module an import statement may load: `from a.b import c` may load a.b.c."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def layer_of_module(name: str) -> str | None:
    """The layer of an orchestrator or cli module name, None for anything else."""
    parts = name.split(".")
    if parts[:2] == ["scaling_orchestrator", "cli"]:
        return "cli"
    if parts[:2] != ["scaling_orchestrator", "orchestrator"]:
        return None
    if len(parts) == 2:
        return "__init__"
    return parts[2] if parts[2] in LAYERS else "__init__"  # a name the lazy API exports


def our_modules(*, cli: bool = True) -> list[Path]:
    paths = sorted(ORCHESTRATOR.rglob("*.py"))
    return paths + (sorted((PACKAGE / "cli").glob("*.py")) if cli else [])


def test_every_orchestrator_subpackage_has_a_layer():
    found = {p.name if p.is_dir() else p.stem for p in ORCHESTRATOR.iterdir() if p.name != "__pycache__"}
    assert found <= set(LAYERS), f"place {sorted(found - set(LAYERS))} in LAYERS (tests/test_layering.py)"


def test_orchestrator_layers_import_only_downward():
    upward = []
    for path in our_modules():
        own = LAYERS.index(layer_of(path))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):  # nested imports too
            for name in imported_modules(node):
                target = layer_of_module(name)
                if target is not None and LAYERS.index(target) > own:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} ({layer_of(path)}) imports {name}")
    assert not upward, "imports up the layers " + " < ".join(LAYERS) + ":\n" + "\n".join(upward)


LOADERS = (ORCHESTRATOR / "__init__.py", ORCHESTRATOR / "spec" / "user_code.py")


def test_no_module_is_loaded_by_name_outside_the_lazy_api():
    """importlib.import_module / __import__ hide an import from the layer check above."""
    found = []
    for path in our_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = node.func if isinstance(node, ast.Call) else None
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            # the lazy API, and spec/user_code.py: the one loader of a user's "pkg.mod:function"
            if name in ("import_module", "__import__") and path not in LOADERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"a module imported by name: {found}"


def test_ray_is_imported_only_in_orchestrator_execution():
    """One folder, no subfolder of it: the Ray edge is read in one place."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "ray" in imported_roots(path) and path.parent != ORCHESTRATOR / "execution"
    ]
    assert not offenders, f"only orchestrator/execution/ imports ray: {offenders}"


def test_importing_the_orchestrator_and_cli_loads_no_ray():
    """Only running trials loads Ray: every module imports without it (searcher.py subclasses
    Ray's Searcher, so it cannot; the trackers' callbacks, execution/tracking.py, are built when
    a study names them)."""
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in our_modules()
        if p.name not in ("__main__.py", "searcher.py")
    ]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(','.join(r for r in ('ray', 'torch') if r in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"importing the orchestrator and cli loaded {out.stdout.strip()}"


def function_level_imports(path: Path):
    """Each import statement inside a function or class body."""
    tree = ast.parse(path.read_text(), str(path))
    for scope in ast.walk(tree):
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for node in ast.walk(scope):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def comment(line: str) -> str:
    text = line.split("#", 1)[1].strip() if "#" in line else ""
    return "" if text.startswith("noqa") else text


def has_reason(lines: list[str], node) -> bool:
    """A comment on the import, or on the line above the run of imports it belongs to."""
    first = node.lineno - 1
    while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
        first -= 1
    return any(comment(line) for line in lines[max(first - 1, 0) : node.end_lineno])


def test_function_level_imports_are_the_lazy_heavy_ones_with_a_reason():
    """Imports sit at the top of a module, but for torch, Ray, matplotlib (and optional optuna),
    which load where they are used; the CLI may load the execution layer (Ray) the same way, and
    its entry point (cli/study.py) a command's own modules when that command runs. Each says
    why in a comment."""
    paths = our_modules(cli=False) + [PACKAGE / "cli" / n for n in ("study.py", "demo.py")]
    paths.append(PACKAGE / "__main__.py")
    bad = []
    for path in paths:
        lines = path.read_text().splitlines()
        for node in function_level_imports(path):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            lazy = all(
                n.split(".")[0] in LAZY_ROOTS
                or n.startswith(LAZY_MODULES)
                or (n.startswith("scaling_orchestrator.orchestrator.execution") and layer_of(path) in
                    ("cli", "execution"))
                or (path == PACKAGE / "cli" / "study.py"
                    and n.startswith(("scaling_orchestrator.cli", "scaling_orchestrator.orchestrator")))
                for n in names
            )
            where = f"{path.relative_to(ROOT)}:{node.lineno} {', '.join(names)}"
            if not lazy:
                bad.append(f"{where}: not a lazy heavy import; move it to the top of the module")
            elif not has_reason(lines, node):
                bad.append(f"{where}: say why it is lazy in a comment")
    assert not bad, "\n".join(bad)


def test_no_folder_holds_more_than_12_modules_or_2000_lines():
    big = []
    for folder in sorted({p.parent for p in PACKAGE.rglob("*.py")}):
        files = list(folder.glob("*.py"))
        lines = sum(len(f.read_text().splitlines()) for f in files)
        if len(files) > MAX_MODULES or lines > MAX_LINES:
            big.append(f"{folder.relative_to(ROOT)}: {len(files)} modules, {lines} lines")
    assert not big, f"split by concept (at most {MAX_MODULES} modules, {MAX_LINES} lines a folder): {big}"


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
    ("options", "fit_json", "prediction"),
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
