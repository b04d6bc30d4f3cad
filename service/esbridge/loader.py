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
fixes everything in one round. A file with any error contributes no checks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    ScalarEvent,
)

from esbridge import limits
from esbridge.limits import printable
from esbridge.models import CHECK_CLASSES, COMMON_FIELDS, KINDS, CheckBase, CheckDefinition

__all__ = ["CheckFileError", "CheckSet", "Issue", "load_checks", "load_text"]

TOP_LEVEL_KEYS = ("defaults", "checks")
NOT_IN_DEFAULTS = ("name", "kind")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a check file (or in the configuration)."""

    file: str
    check: str | None
    field: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        # Names come from the file: control characters are escaped so that a name holding a
        # newline cannot forge a line ("OK: 999 checks") in validate output or the log.
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        parts = [printable(where, 500)]
        if self.check is not None:
            parts.append(f"check '{printable(self.check)}'")
        if self.field is not None:
            parts.append(f"field '{printable(self.field)}'")
        return ": ".join(parts) + f": {printable(self.message, 2000)}"


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
        file_checks, file_issues = _load_file(file, text, seen)
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
    checks, issues = _load_file(file, text, {})
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


def _expand(paths: Sequence[str | Path], issues: list[Issue]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for pattern in ("*.yaml", "*.yml") for p in path.rglob(pattern) if not p.is_dir()
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


def _load_file(
    file: str, text: str, seen: dict[str, tuple[str, int | None]]
) -> tuple[dict[str, CheckDefinition], list[Issue]]:
    try:
        return _load_file_checked(file, text, seen)
    except (RecursionError, MemoryError, ValueError, OverflowError, TypeError) as exc:
        # Whatever slips past the limits below still ends as a located issue, never a
        # traceback that takes down validate, serve or a reload.
        return {}, [Issue(file, None, None, None, f"cannot load: {type(exc).__name__}: {exc}")]


def yaml_shape_issue(file: str, text: str) -> Issue | None:
    """Depth and size after alias expansion, from the parser's events (nothing is built).

    The composer is recursive and ``to_plain`` copies every alias: a few hundred bytes of
    nested aliases ("billion laughs") or a few hundred nested brackets would take minutes,
    gigabytes or the Python stack. Counting events first refuses such files at once, naming
    the check and field where the path is known (``checks[i].query_dsl...``).
    """
    sizes: dict[str, int] = {}
    frames: list[_Frame] = [_Frame(None, False)]
    names: dict[int, str] = {}  # check position -> name, as far as read

    def issue(event: Any, message: str) -> Issue:
        line = event.start_mark.line + 1 if event.start_mark else None
        path = [f.key for f in frames[1:] if f.key is not None]
        check = field_name = None
        if len(path) >= 2 and path[0] == "checks" and isinstance(path[1], int):
            check = names.get(path[1])
            field_name = ".".join(str(p) for p in path[2:3]) or None
        elif path:
            field_name = ".".join(str(p) for p in path[:2])
        return Issue(file, check, field_name, line, message)

    for event in YAML(typ="rt").parse(text):
        top = frames[-1]
        if isinstance(event, AliasEvent):
            top.count += sizes.get(str(event.anchor), 1)
            top.advance()
        elif isinstance(event, CollectionStartEvent):
            frames.append(_Frame(event.anchor, isinstance(event, MappingStartEvent)))
            if len(frames) - 1 > limits.MAX_NESTING_DEPTH:
                return issue(event, f"nested deeper than {limits.MAX_NESTING_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            done = frames.pop()
            if done.anchor is not None:
                sizes[str(done.anchor)] = done.count
            frames[-1].count += done.count
            frames[-1].advance()
        elif isinstance(event, ScalarEvent):
            value = event.value or ""
            if top.mapping and top.expect_key:
                top.key = value
                top.expect_key = False
                continue  # keys are not counted as values
            top.count += 1
            if event.anchor is not None:
                sizes[str(event.anchor)] = 1
            digits = value.lstrip("+-")
            if event.style is None and len(digits) > 100 and digits.isdigit():
                return issue(
                    event,
                    f"a number with {len(digits)} digits is too large "
                    f"(numbers must lie within ±{limits.MAX_ABS_NUMBER:.0e})",
                )
            if top.key == "name" and len(frames) == 4 and frames[1].key == "checks":
                index = frames[2].key
                if isinstance(index, int):
                    names[index] = value
            top.advance()
        if top.count > limits.MAX_YAML_NODES or frames[0].count > limits.MAX_YAML_NODES:
            return issue(
                event,
                f"more than {limits.MAX_YAML_NODES} values once aliases (*name) are "
                "expanded: refusing to expand it",
            )
    return None


class _Frame:
    """One open mapping or list while reading parser events: where we are, how big."""

    __slots__ = ("anchor", "count", "expect_key", "key", "mapping")

    def __init__(self, anchor: Any, mapping: bool) -> None:
        self.anchor = anchor
        self.mapping = mapping
        self.count = 1
        self.expect_key = mapping
        self.key: str | int | None = None if mapping else 0

    def advance(self) -> None:
        """A value was read: a mapping expects a key next, a list moves to its next item."""
        if self.mapping:
            self.expect_key = True
        elif isinstance(self.key, int):
            self.key += 1


def _load_file_checked(
    file: str, text: str, seen: dict[str, tuple[str, int | None]]
) -> tuple[dict[str, CheckDefinition], list[Issue]]:
    issues: list[Issue] = []
    checks: dict[str, CheckDefinition] = {}
    try:
        shape = yaml_shape_issue(file, text)
        if shape is not None:
            return {}, [shape]
        doc = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        return {}, [Issue(file, None, None, line, f"invalid YAML: {problem}")]
    except YAMLError as exc:
        return {}, [Issue(file, None, None, None, f"invalid YAML: {exc}")]

    if doc is None:
        return {}, []
    if not isinstance(doc, Mapping):
        return {}, [
            Issue(
                file,
                None,
                None,
                1,
                "expected a mapping with 'checks:' (and optional 'defaults:') "
                f"at the top level, found {_what(doc)}",
            )
        ]
    for key in doc:
        if key in TOP_LEVEL_KEYS or (isinstance(key, str) and key.startswith("x-")):
            continue
        issues.append(
            Issue(
                file,
                None,
                str(key),
                _key_line(doc, key),
                "unknown top-level key"
                + _did_you_mean(str(key), TOP_LEVEL_KEYS)
                + " (a file holds 'defaults:' and 'checks:')",
            )
        )

    defaults = doc.get("defaults")
    if defaults is None:
        defaults = CommentedMap()
    elif not isinstance(defaults, Mapping):
        issues.append(
            Issue(
                file,
                None,
                "defaults",
                _key_line(doc, "defaults"),
                f"must be a mapping of check fields, found {_what(defaults)}",
            )
        )
        defaults = CommentedMap()
    else:
        for key in list(defaults):
            if key in NOT_IN_DEFAULTS:
                issues.append(
                    Issue(
                        file,
                        None,
                        f"defaults.{key}",
                        _key_line(defaults, key),
                        f"'{key}' cannot be a default: set it on each check",
                    )
                )
            elif key not in COMMON_FIELDS:
                issues.append(
                    Issue(
                        file,
                        None,
                        f"defaults.{key}",
                        _key_line(defaults, key),
                        "unknown field"
                        + _did_you_mean(str(key), COMMON_FIELDS)
                        + _other_kind_hint(str(key), defaults_only=True),
                    )
                )

    items = doc.get("checks")
    if items is None:
        items = CommentedSeq()
    elif not isinstance(items, list):
        issues.append(
            Issue(
                file,
                None,
                "checks",
                _key_line(doc, "checks"),
                f"must be a list of checks ('- name: ...'), found {_what(items)}",
            )
        )
        items = CommentedSeq()

    for position, item in enumerate(items):
        line = _item_line(items, position)
        check, item_issues = _load_item(file, item, position, line, defaults)
        for issue in item_issues:
            if issue not in issues:  # a bad default shows once, not once per check
                issues.append(issue)
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                other_file, other_line = seen[name]
                where = f"{other_file}:{other_line}" if other_line else other_file
                issues.append(
                    Issue(
                        file,
                        name,
                        "name",
                        _key_line(item, "name") or line,
                        f"duplicate check name: also defined at {where}",
                    )
                )
            else:
                seen[name] = (file, line)
        if check is not None and not item_issues and isinstance(name, str):
            checks.setdefault(name, check)
    return checks, issues


def _load_item(
    file: str, item: Any, position: int, line: int | None, defaults: Mapping[str, Any]
) -> tuple[CheckDefinition | None, list[Issue]]:
    label = f"check #{position + 1}"
    if not isinstance(item, Mapping):
        return None, [
            Issue(
                file,
                None,
                None,
                line,
                f"{label} must be a mapping ('name: ...', 'kind: ...'), found {_what(item)}",
            )
        ]
    name = item.get("name")
    check_name = name if isinstance(name, str) else None
    issues: list[Issue] = []
    if name is None:
        issues.append(Issue(file, None, "name", line, f"missing required field ({label})"))

    kind = item.get("kind")
    if kind is None:
        issues.append(
            Issue(file, check_name, "kind", line, f"missing field; one of: {', '.join(KINDS)}")
        )
        return None, issues
    if kind not in CHECK_CLASSES:
        issues.append(
            Issue(
                file,
                check_name,
                "kind",
                _key_line(item, "kind") or line,
                f"unknown kind {kind!r}"
                + _did_you_mean(str(kind), KINDS)
                + f" (kinds: {', '.join(KINDS)})",
            )
        )
        return None, issues
    cls = CHECK_CLASSES[kind]

    data: dict[str, Any] = {
        k: to_plain(v)
        for k, v in defaults.items()
        if k in COMMON_FIELDS and k not in NOT_IN_DEFAULTS
    }
    from_defaults = set(data)
    for key, value in item.items():
        value = to_plain(value)
        if key == "labels" and isinstance(data.get("labels"), dict) and isinstance(value, dict):
            value = {**data["labels"], **value}
        data[key] = value
        from_defaults.discard(key)

    try:
        check = cls.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("name",):
                continue  # reported above
            issues.append(
                _translate(file, check_name, item, line, defaults, from_defaults, cls, error)
            )
        issues.sort(key=lambda issue: issue.line or 0)
        return None, issues
    if issues:
        return None, issues
    return check.with_source(file, line), []  # type: ignore[return-value]


# --- pydantic errors → sentences ------------------------------------------------------------


def _translate(
    file: str,
    check_name: str | None,
    item: Mapping[str, Any],
    item_line: int | None,
    defaults: Mapping[str, Any],
    from_defaults: set[str],
    cls: type[CheckBase],
    error: Mapping[str, Any],
) -> Issue:
    loc = tuple(error.get("loc", ()))
    # union members add their type to loc (numerator.str / numerator.dict[str,any])
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "dict"})))
    field_path = ".".join(str(p) for p in loc) or None
    kind_of = error.get("type", "")
    message = _sentence(error)

    top = loc[0] if loc else None
    in_defaults = isinstance(top, str) and top in from_defaults
    if in_defaults:
        line = _path_line(defaults, loc) or item_line
        field_name = f"defaults.{field_path}"
        check = None
    else:
        line = _path_line(item, loc) or item_line
        field_name = field_path
        check = check_name

    if kind_of == "extra_forbidden" and isinstance(top, str):
        message = (
            "unknown field"
            + _did_you_mean(top, tuple(cls.model_fields))
            + _other_kind_hint(top, kind=cls.model_fields["kind"].default)
        )
    elif kind_of == "missing":
        message = "missing required field"
    return Issue(file, check, field_name, line, message)


_PREFIXES = ("Value error, ", "Assertion failed, ")


def _sentence(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg", "invalid value"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} is not allowed: use lowercase letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    if kind == "too_long":
        ctx = error.get("ctx", {})
        return f"too many items: at most {ctx.get('max_length')}, got {ctx.get('actual_length')}"
    if kind == "string_too_long":
        return f"too long (at most {error.get('ctx', {}).get('max_length')} characters)"
    ctx = error.get("ctx", {})
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        words = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        return f"must be {words} {limit}, got {value!r}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{value!r} is not allowed; use {expected}"
    if msg.startswith("Input should be"):
        msg = "should be" + msg[len("Input should be") :]
        if value is not None and not isinstance(value, dict | list):
            msg += f", got {value!r}"
    return msg


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _other_kind_hint(name: str, kind: str | None = None, defaults_only: bool = False) -> str:
    owners = [k for k, c in CHECK_CLASSES.items() if name in c.model_fields and k != kind]
    if not owners:
        return ""
    if defaults_only:
        return f" ('{name}' is a field of kind {', '.join(owners)}, not a common default)"
    return f" ('{name}' is a field of kind {', '.join(owners)})"


# --- YAML helpers ---------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """ruamel round-trip types → plain dict/list/str (so models hold ordinary values)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _key_line(mapping: Any, key: Any) -> int | None:
    try:
        return mapping.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return None


def _item_line(seq: Any, index: int) -> int | None:
    try:
        return seq.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _path_line(node: Any, loc: Sequence[Any]) -> int | None:
    """Line of the deepest key of ``loc`` that exists in the YAML node."""
    line = None
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            line = _key_line(node, part) or line
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = _item_line(node, part) or line
            node = node[part]
        else:
            break
    return line


def _what(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"
