"""The package's shape: no import cycle, no private name imported from another module, and the
stages where docs/ARCHITECTURE.md says they are. Read from the source with ast, nothing imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "extract_ikheaders"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(module: str, top_level_only: bool) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for the package's own imports in `module`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    guarded = {id(node) for top in tree.body if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
               for node in ast.walk(top)}
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if not isinstance(node, ast.ImportFrom) or id(node) in guarded:
            continue
        if node.level:
            base = package[: len(package) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if not source.startswith("extract_ikheaders"):
            continue
        for alias in node.names:
            child = f"{source}.{alias.name}"
            yield (child, "", node.lineno) if child in MODULES else (source, alias.name, node.lineno)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_at_module_level() -> None:
    graph = {module: {target for target, _, _ in _imports(module, top_level_only=True)
                      if target in MODULES and target != module} for module in MODULES}
    graph = {module: {t for t in targets if not module.startswith(t + ".")} for module, targets in graph.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [f"{module}:{line} imports {name} from {source}" for module in MODULES
               for source, name, line in _imports(module, top_level_only=False)
               if name.startswith("_") and not name.startswith("__") and source != module]
    assert private == []


def test_the_stages_are_folders() -> None:
    for stage in ("analysis", "archive", "cli", "dumps", "elf", "images"):
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    assert "click" not in {alias.name.split(".")[0] for module, path in MODULES.items() if not module.startswith(
        "extract_ikheaders.cli") for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}


def test_no_function_local_import_of_the_packages_own_modules() -> None:
    """Local imports hide cycles; the package's modules are imported at the top (third-party ones
    that are heavy and needed on one path only, like pyelftools or drgn, may stay local)."""
    local = []
    for module in MODULES:
        top = {(source, line) for source, _, line in _imports(module, top_level_only=True)}
        local += [f"{module}:{line} imports {source}" for source, _, line in _imports(module, top_level_only=False)
                  if (source, line) not in top]
    assert local == []


def test_listing_a_vmlinux_executes_only_the_stages_it_needs(vmlinux: Path) -> None:
    """lazy.py: a run loads a stage when it first uses it. A vmlinux is the registry's first format,
    so no other image format, no codec, no dump reader and no analysis module is executed (a module
    not imported yet is only a stand-in, outside sys.modules)."""
    import subprocess
    import sys

    code = ("import sys\nfrom extract_ikheaders.cli.main import main\n"
            "try:\n    main(['-l', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
            "run = sorted(n for n in sys.modules if n.startswith('extract_ikheaders.'))\n"
            "print(' '.join(run), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, str(vmlinux)], capture_output=True, text=True, check=True)
    executed = set(result.stderr.split())
    assert {"extract_ikheaders.pipeline", "extract_ikheaders.archive.unpack"} <= executed
    images = {n for n in executed if n.startswith("extract_ikheaders.images.")}
    assert images == {"extract_ikheaders.images.elf_kernel", "extract_ikheaders.images.peeler",
                      "extract_ikheaders.images.registry"}
    # dumps.kcore only answers whether the input is /proc/kcore
    assert [n for n in sorted(executed) if n != "extract_ikheaders.dumps.kcore" and n.startswith((
        "extract_ikheaders.dumps.", "extract_ikheaders.compression", "extract_ikheaders.analysis.isf",
        "extract_ikheaders.analysis.debuginfo", "extract_ikheaders.analysis.drgn_session",
        "extract_ikheaders.analysis.kallsyms", "extract_ikheaders.info"))] == []


def test_a_lazy_module_read_by_two_threads_at_once_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: with -j 2, two threads read a stage that one of them was still importing, and the
    other got the half-executed module (an internal error, "no attribute 'describe'")."""
    import threading
    import time

    from extract_ikheaders import lazy

    package = tmp_path / "slowpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "slow.py").write_text("import time\ntime.sleep(0.3)\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    results: list[object] = []

    def read() -> None:
        try:
            results.append(lazy.module("slowpkg.slow").VALUE)
        except AttributeError as exc:
            results.append(exc)

    first, second = threading.Thread(target=read), threading.Thread(target=read)
    first.start()
    time.sleep(0.1)  # the first is inside the import now
    second.start()
    first.join()
    second.join()
    assert results == [42, 42]
