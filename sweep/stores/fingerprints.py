"""What a cached result depends on, as hashes: settings, package versions, and the code.

A cache entry is only as good as its key. Settings and data are hashed as they
are; code is hashed as the **import closure** of the classes that made the entry:
the source files of those classes and of every module of the project (or of the
user's own code) that they import, directly or not, found by reading the imports
in the source (function-level imports included), plus the C sources, headers and
linker scripts kept beside those modules. So whoever adds a module that measures
(a new check, a helper of a runtime) invalidates the results it affects without
adding it to any list, and editing code that does not measure (the ranking, the
CLI) invalidates nothing. Installed packages are not read file by file: their
versions are part of the keys.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from sweep.stores.memos import per_sweep

ASSET_SUFFIXES = frozenset({".c", ".cc", ".cpp", ".h", ".hpp", ".ld", ".s", ".S"})
"""Non-Python sources that code beside them compiles or links (e.g. the Cortex-M harness)."""


def digest(material: Any) -> str:
    """A stable hash of JSON-able settings."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of these packages ("unknown" for one that is not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


@per_sweep
def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    return tuple(Path(p).resolve() for p in roots)


@per_sweep
def _source_bytes(path: Path) -> bytes:
    return path.read_bytes()


@per_sweep
def _module_file(name: str) -> Path | None:
    """The source file of a module of the project or of the user's own code; None for the
    standard library, installed packages and modules that cannot be found."""
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return None
    try:
        top_spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if top_spec is None or not _is_own(top_spec):
        return None
    try:  # finding a submodule imports its parent packages: only ever the project's own
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _is_own(spec: importlib.machinery.ModuleSpec) -> bool:
    where = spec.origin or next(iter(spec.submodule_search_locations or []), None)
    if where is None or where in ("built-in", "frozen"):
        return False
    path = Path(where).resolve()
    return not any(root == path or root in path.parents for root in _installed_roots())


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, package: str) -> set[str]:
    """Modules an AST imports (candidates: ``from a import b`` may mean module ``a.b``)."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)  # imports for type hints only run nothing
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return {n for n in names if n}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@per_sweep
def _closure_of(name: str) -> frozenset[Path]:
    """Source files of module ``name`` and of every own module it imports, transitively."""
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        path = _module_file(current)
        if path is None:
            continue
        files.add(path)
        is_package = path.name == "__init__.py"
        package = current if is_package else current.rpartition(".")[0]
        tree = ast.parse(_source_bytes(path), filename=str(path))
        todo.extend(_imported_names(tree, package))
        todo.extend(_parents(current))  # importing a.b runs a/__init__.py
    return frozenset(files)


def _assets(folder: Path) -> list[Path]:
    """C sources, headers and linker scripts in ``folder``'s subfolders that are not
    Python packages (e.g. ``sweep/runtimes/cortex_m/firmware/``)."""
    found: list[Path] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (sub / "__init__.py").exists() or sub.name.startswith((".", "__")):
            continue
        found += [p for p in sorted(sub.rglob("*")) if p.suffix in ASSET_SUFFIXES and p.is_file()]
    return found


def import_closure(modules: Iterable[str]) -> list[Path]:
    """The files whose bytes the code of ``modules`` depends on (see the module docstring)."""
    files: set[Path] = set()
    for name in modules:
        files |= _closure_of(name)
    for folder in {f.parent for f in files}:
        files.update(_assets(folder))
    return sorted(files)


def _class_modules(objects: Iterable[Any]) -> tuple[list[str], list[Path]]:
    """Module names of the objects' classes (and bases), and their files (even when the
    class lives in an installed package: a user's own package is still read)."""
    names, files = [], []
    for obj in objects:
        cls = obj if isinstance(obj, type) else type(obj)
        for klass in cls.__mro__:
            if klass is object or klass.__module__.split(".")[0] in sys.stdlib_module_names:
                continue
            names.append(klass.__module__)
            try:
                source = inspect.getsourcefile(klass)
            except TypeError:  # built-in classes have no source
                source = None
            if source:
                files.append(Path(source).resolve())
    return names, files


def code_fingerprint(*objects: Any, modules: Iterable[str] = ()) -> str:
    """Hash of the import closure of these objects' classes (and of ``modules``).

    Editing a model builder, a trainer, a quantizer, a check, or any helper of the
    project or of the user that they import, changes the hash.
    """
    names, files = _class_modules(objects)
    closure = set(import_closure([*names, *modules])) | set(files)
    blob = hashlib.sha256()
    for path in sorted(closure):
        source = _source_bytes(path)
        blob.update(f"{len(source)}:".encode() + source)
    return blob.hexdigest()[:16]
