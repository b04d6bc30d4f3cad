"""Read check files (YAML) into a ``CheckSet``; every problem names file, check, field and line.

A file looks like::

    defaults:            # optional: merged into every check of this file
      index: logs-web-*
      labels: {team: web}
    checks:
      - name: web-5xx
        kind: count
        query: "status:>=500"
        critical: 50

All issues of all files are collected before ``CheckFileError`` is raised, so an operator
fixes everything in one round. A file with any error contributes no checks. One file's text
is read by ``checkfile``; YAML lines, limits and error sentences come from ``yamldoc``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from esbridge import limits
from esbridge.checkfile import load_file
from esbridge.models import CheckDefinition
from esbridge.yamldoc import Issue

__all__ = ["CheckFileError", "CheckSet", "Issue", "load_checks", "load_text"]


class CheckFileError(Exception):
    """Check files are invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


@dataclass(frozen=True)
class CheckSet:
    """The loaded checks, by name, in file order then position."""

    checks: dict[str, CheckDefinition] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    warnings: tuple[Issue, ...] = ()
    """Valid but suspicious settings (a range that can never alert): printed, not refused."""

    def get(self, name: str) -> CheckDefinition | None:
        return self.checks.get(name)

    def names(self) -> list[str]:
        return list(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def __iter__(self) -> Iterator[CheckDefinition]:
        return iter(self.checks.values())

    def __contains__(self, name: object) -> bool:
        return name in self.checks

    def close_names(self, name: str) -> list[str]:
        """Up to three loaded names close to ``name``: the "did you mean" of unknown checks."""
        return difflib.get_close_matches(name, list(self.checks), n=3, cutoff=0.5)


# --- public entry points ---------------------------------------------------------------------


def load_checks(paths: Sequence[str | Path] | str | Path) -> CheckSet:
    """Load files and directories (``*.yaml``/``*.yml``, recursive, sorted).

    Raises ``CheckFileError`` listing every issue of every file.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    issues: list[Issue] = []
    files = _expand(paths, issues)
    checks: dict[str, CheckDefinition] = {}
    seen: dict[str, tuple[str, int | None]] = {}
    for file in files:
        try:
            size = Path(file).stat().st_size
            if size > limits.MAX_CHECK_FILE_BYTES:
                issues.append(
                    Issue(
                        file,
                        None,
                        None,
                        None,
                        f"file is {size} bytes: at most {limits.MAX_CHECK_FILE_BYTES} "
                        "bytes per check file (split it into several files)",
                    )
                )
                continue
            text = Path(file).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            issues.append(Issue(file, None, None, None, f"not UTF-8 text: {exc.reason}"))
            continue
        except OSError as exc:
            issues.append(Issue(file, None, None, None, f"cannot read: {exc.strerror or exc}"))
            continue
        file_checks, file_issues = load_file(file, text, seen)
        issues.extend(file_issues)
        if not file_issues:
            checks.update(file_checks)
    if len(seen) > limits.MAX_CHECKS:
        issues.append(
            Issue(
                ", ".join(files[:3]) + (", ..." if len(files) > 3 else ""),
                None,
                None,
                None,
                f"{len(seen)} checks: at most {limits.MAX_CHECKS} in all files together",
            )
        )
    if issues:
        raise CheckFileError(issues)
    return CheckSet(checks=checks, files=tuple(files), warnings=tuple(_warnings(checks)))


def load_text(text: str, file: str = "<text>") -> CheckSet:
    """Load one file's content (used for documentation examples and tests)."""
    if len(text.encode("utf-8")) > limits.MAX_CHECK_FILE_BYTES:
        raise CheckFileError(
            [Issue(file, None, None, None, f"at most {limits.MAX_CHECK_FILE_BYTES} bytes")]
        )
    checks, issues = load_file(file, text, {})
    if issues:
        raise CheckFileError(issues)
    return CheckSet(checks=checks, files=(file,), warnings=tuple(_warnings(checks)))


def _warnings(checks: Mapping[str, CheckDefinition]) -> list[Issue]:
    found = []
    for name, check in checks.items():
        for field_name, message in check.warnings():
            found.append(
                Issue(check.source_file or "<text>", name, field_name, check.source_line, message)
            )
    return found


# --- files -------------------------------------------------------------------------------------


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _expand(paths: Sequence[str | Path], issues: list[Issue]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # Hidden files and folders below it are skipped: a Kubernetes ConfigMap volume
            # holds each file twice, once in its hidden "..<timestamp>/" folder.
            found = sorted(
                p
                for pattern in ("*.yaml", "*.yml")
                for p in path.rglob(pattern)
                if not p.is_dir() and not _hidden(p.relative_to(path))
            )
            if not found:
                issues.append(
                    Issue(str(path), None, None, None, f"no check files (*.yaml, *.yml) in {path}")
                )
            files.extend(str(p) for p in found)
        elif path.exists() or path.is_symlink():
            files.append(str(path))
        else:
            issues.append(Issue(str(path), None, None, None, "no such file or directory"))
    unique: list[str] = []
    for file in files:
        if file not in unique:
            unique.append(file)
    return unique
