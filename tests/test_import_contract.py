"""The module table of docs/architecture.md is the import contract, and this test enforces it.

Every module under ``service/esbridge`` must have a row (``module | role | may import``), and
every ``esbridge`` module it imports, at the top, under ``TYPE_CHECKING`` or lazily inside a
function, must be allowed by its row. An entry names a module (``store``), a package (covers
its modules: ``devtools``) or ``everything``; entries that are not esbridge modules (``stdlib``,
``pydantic``, ``httpx``) say what else the module uses and must be importable, so a misspelt or
stale module name fails here instead of allowing nothing. A row may cover a whole folder
(``kinds/``): every module in it that has no row of its own. Text in parentheses is a comment.
Pure parsing of files: no Elasticsearch.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "service" / "esbridge"
TABLE = ROOT / "docs" / "architecture.md"
HEADER = re.compile(r"^\|\s*module\s*\|\s*role\s*\|\s*may import\s*\|\s*$")
KEYWORDS = {"everything", "stdlib"}


@dataclass(frozen=True)
class Row:
    """One row of the table: which module(s) it is for and what they may import."""

    line: int
    path: str  # as written, relative to service/esbridge: "esclient.py", "kinds/"
    allows: frozenset[str]  # esbridge modules/packages ("store", "devtools")
    everything: bool
    others: tuple[str, ...]  # the entries that are not esbridge modules ("stdlib", "httpx")


def module_name(path: Path) -> str:
    """``service/esbridge/kinds/count.py`` → ``kinds.count``; a package's ``__init__`` is the
    package (``kinds``); the root package itself is ``__init__``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for p in sorted(PACKAGE.rglob("*.py"))
        if "__pycache__" not in p.parts and not p.name.startswith(".")
    }


def _is_esbridge(name: str, modules: dict[str, Path]) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def parse_table(text: str, modules: dict[str, Path]) -> list[Row]:
    """The rows of the one table whose header is ``module | role | may import``."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if HEADER.match(line.strip())), None)
    assert start is not None, f"{TABLE}: no table with the header 'module | role | may import'"
    rows: list[Row] = []
    for number, line in enumerate(lines[start + 2 :], start=start + 3):
        if not line.strip().startswith("|"):
            break
        # A "|" inside a cell is written "\\|" (GitHub's tables need that even in code).
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        assert len(cells) == 3, f"{TABLE}:{number}: expected 3 cells, got {len(cells)}: {line}"
        path = cells[0].strip("`").strip()
        allowed = re.sub(r"\([^)]*\)", "", cells[2]).replace("`", "")
        entries = [e.strip() for e in allowed.split(",") if e.strip()]
        names: set[str] = set()
        others: list[str] = []
        everything = False
        for entry in entries:
            entry = re.sub(r"\s+only$", "", entry)  # "stdlib only"
            if entry == "everything":
                everything = True
            elif _is_esbridge(entry, modules):
                names.add(entry)
            else:
                others.append(entry)
        rows.append(Row(number, path, frozenset(names), everything, tuple(others)))
    return rows


def row_for(file: Path, rows: list[Row]) -> Row | None:
    """The module's own row, else the row of the nearest folder holding it."""
    path = file.relative_to(PACKAGE).as_posix()
    own = [r for r in rows if r.path == path]
    if own:
        return own[0]
    folders = [
        r
        for r in rows
        if (r.path.endswith("/") and path.startswith(r.path))
        or (r.path.endswith("/*.py") and path.startswith(r.path[:-4]))
    ]
    return max(folders, key=lambda r: len(r.path), default=None)


def esbridge_imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, esbridge module) for every import in the file, wherever it is written."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if name == "__init__":
        package = ""  # the root package's own __init__
    elif path.name == "__init__.py":
        package = name
    else:
        package = name.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def add(line: int, dotted: str) -> None:
        if dotted == "esbridge":
            return  # the root package: imported by every submodule import anyway
        if dotted.startswith("esbridge."):
            found.append((line, dotted.removeprefix("esbridge.")))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(["esbridge", *base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not (target == "esbridge" or target.startswith("esbridge.")):
                continue
            for alias in node.names:
                inner = f"{target}.{alias.name}".removeprefix("esbridge.")
                # "from esbridge import gateclient" imports a module; "from esbridge.x import
                # name" imports from x.
                add(node.lineno, f"esbridge.{inner}" if inner in modules else target)
    return sorted(set(found))


def allowed(row: Row, imported: str, importer: str) -> bool:
    if row.everything or imported == importer:
        return True
    return any(imported == a or imported.startswith(a + ".") for a in row.allows)


@pytest.fixture(scope="module")
def contract() -> tuple[dict[str, Path], list[Row]]:
    modules = all_modules()
    return modules, parse_table(TABLE.read_text(encoding="utf-8"), modules)


def test_every_module_has_a_row(contract):
    modules, rows = contract
    missing = [
        modules[name].relative_to(PACKAGE).as_posix()
        for name in modules
        if row_for(modules[name], rows) is None
    ]
    assert not missing, f"modules without a row in {TABLE.name}'s module table: {missing}"


def test_every_row_names_an_existing_module(contract):
    modules, rows = contract
    paths = {p.relative_to(PACKAGE).as_posix() for p in modules.values()}
    stale = []
    for row in rows:
        folder = row.path.removesuffix("*.py")
        exists = row.path in paths or (
            folder.endswith("/") and any(p.startswith(folder) for p in paths)
        )
        if not exists:
            stale.append(f"line {row.line}: {row.path}")
    assert not stale, f"rows in {TABLE.name} for modules that do not exist: {stale}"


def test_non_module_entries_are_real_packages(contract):
    """``pydantic``, ``httpx``: must be importable (a typo of a module name is not)."""
    _, rows = contract
    unknown = [
        f"line {row.line} ({row.path}): {entry!r}"
        for row in rows
        for entry in row.others
        if entry not in KEYWORDS
        and not (re.fullmatch(r"[A-Za-z_][\w.]*", entry) and importlib.util.find_spec(entry))
    ]
    assert not unknown, (
        f"'may import' entries in {TABLE.name} that are neither an esbridge module, "
        f"'everything', 'stdlib' nor an installed package: {unknown}"
    )


def test_every_import_is_allowed_by_the_table(contract):
    modules, rows = contract
    broken: list[str] = []
    for name, path in modules.items():
        row = row_for(path, rows)
        if row is None:
            continue  # reported by test_every_module_has_a_row
        for line, imported in esbridge_imports(path, name, modules):
            if not allowed(row, imported, name):
                where = path.relative_to(ROOT).as_posix()
                broken.append(f"{where}:{line} imports {imported} (row line {row.line})")
    assert not broken, (
        f"imports that {TABLE.name}'s module table does not allow (fix the import, or the "
        "row when the dependency is right):\n" + "\n".join(broken)
    )


# -- the checker itself ---------------------------------------------------------------------


def test_the_checker_sees_lazy_relative_and_from_package_imports(tmp_path):
    modules = {"kinds": Path(), "kinds.base": Path(), "kinds.count": Path(), "store": Path()}
    modules["gateclient"] = Path()
    source = (
        "from esbridge import __version__, gateclient\n"
        "from .base import X\n"
        "def f():\n"
        "    from esbridge.store import ResultStore\n"
        "    import esbridge.kinds.count\n"
    )
    file = tmp_path / "count.py"
    file.write_text(source)
    got = esbridge_imports(file, "kinds.count", modules)
    assert got == [(1, "gateclient"), (2, "kinds.base"), (4, "store"), (5, "kinds.count")]


def test_the_table_parser_reads_entries_comments_and_folders():
    modules = {"store": Path(), "devtools.elasticsearch": Path(), "nagios": Path()}
    text = (
        "| module | role | may import |\n|---|---|---|\n"
        "| `a.py` | x | store, `devtools` (the harness), pydantic |\n"
        "| `kinds/` | y | stdlib only (direct mode imports nagios lazily) |\n"
        "| `app.py` | z | everything |\n"
        "\nafter the table\n"
    )
    rows = parse_table(text, modules)
    assert [r.path for r in rows] == ["a.py", "kinds/", "app.py"]
    assert rows[0].allows == {"store", "devtools"} and rows[0].others == ("pydantic",)
    assert rows[1].allows == frozenset() and rows[1].others == ("stdlib",)
    assert rows[2].everything and not rows[0].everything
    assert allowed(rows[0], "devtools.elasticsearch", "a")
    assert not allowed(rows[0], "nagios", "a")
    assert not allowed(rows[1], "nagios", "kinds.count")
