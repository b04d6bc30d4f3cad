"""One check file's text -> its checks, or every issue found in it (file, check, field, line).

Top-level keys, ``defaults:`` merged into each check, one pydantic model per check (chosen by
``kind``), duplicate names across files; pydantic errors become sentences through
``yamldoc``. ``loader`` walks the files and builds the ``CheckSet``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from esbridge.models import CHECK_CLASSES, COMMON_FIELDS, KINDS, CheckBase, CheckDefinition
from esbridge.yamldoc import (
    Issue,
    did_you_mean,
    item_line,
    key_line,
    parse_yaml,
    path_line,
    sentence,
    to_plain,
    what,
)

__all__ = ["NOT_IN_DEFAULTS", "TOP_LEVEL_KEYS", "load_file"]

TOP_LEVEL_KEYS = ("defaults", "checks")
NOT_IN_DEFAULTS = ("name", "kind")


def load_file(
    file: str, text: str, seen: dict[str, tuple[str, int | None]]
) -> tuple[dict[str, CheckDefinition], list[Issue]]:
    """One file's checks by name, and its issues (a file with any issue adds no check).

    ``seen`` maps the names of earlier files to where they are defined (duplicates).
    """
    try:
        return _load_file_checked(file, text, seen)
    except (RecursionError, MemoryError, ValueError, OverflowError, TypeError) as exc:
        # Whatever slips past the limits below still ends as a located issue, never a
        # traceback that takes down validate, serve or a reload.
        return {}, [Issue(file, None, None, None, f"cannot load: {type(exc).__name__}: {exc}")]


def _load_file_checked(
    file: str, text: str, seen: dict[str, tuple[str, int | None]]
) -> tuple[dict[str, CheckDefinition], list[Issue]]:
    issues: list[Issue] = []
    checks: dict[str, CheckDefinition] = {}
    doc, problem = parse_yaml(file, text)
    if problem is not None:
        return {}, [problem]

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
                f"at the top level, found {what(doc)}",
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
                key_line(doc, key),
                "unknown top-level key"
                + did_you_mean(str(key), TOP_LEVEL_KEYS)
                + " (a file holds 'defaults:' and 'checks:')",
            )
        )

    defaults = _section(
        file, doc, "defaults", Mapping, CommentedMap, "a mapping of check fields", issues
    )
    for key in list(defaults):
        if key in NOT_IN_DEFAULTS:
            problem = f"'{key}' cannot be a default: set it on each check"
        elif key not in COMMON_FIELDS:
            problem = (
                "unknown field"
                + did_you_mean(str(key), COMMON_FIELDS)
                + _other_kind_hint(str(key), defaults_only=True)
            )
        else:
            continue
        issues.append(Issue(file, None, f"defaults.{key}", key_line(defaults, key), problem))

    items = _section(
        file, doc, "checks", list, CommentedSeq, "a list of checks ('- name: ...')", issues
    )

    for position, item in enumerate(items):
        line = item_line(items, position)
        check, item_issues = _load_item(file, item, position, line, defaults)
        for issue in item_issues:
            if issue not in issues:  # a bad default shows once, not once per check
                issues.append(issue)
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                other_file, other_line = seen[name]
                where = f"{other_file}:{other_line}" if other_line else other_file
                problem = f"duplicate check name: also defined at {where}"
                issues.append(_field_issue(file, name, item, "name", line, problem))
            else:
                seen[name] = (file, line)
        if check is not None and not item_issues and isinstance(name, str):
            checks.setdefault(name, check)
    return checks, issues


def _section(
    file: str,
    doc: Mapping[str, Any],
    key: str,
    expected: type,
    empty: Callable[[], Any],
    expectation: str,
    issues: list[Issue],
) -> Any:
    """The top-level ``key`` of a file, or an empty one (with an issue when of the wrong type)."""
    value = doc.get(key)
    if value is None:
        return empty()
    if not isinstance(value, expected):
        problem = f"must be {expectation}, found {what(value)}"
        issues.append(Issue(file, None, key, key_line(doc, key), problem))
        return empty()
    return value


def _field_issue(
    file: str, check: str | None, item: Any, field: str, line: int | None, problem: str
) -> Issue:
    """An issue about ``field`` of a check, at the field's own line when it has one."""
    return Issue(file, check, field, key_line(item, field) or line, problem)


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
                f"{label} must be a mapping ('name: ...', 'kind: ...'), found {what(item)}",
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
        problem = (
            f"unknown kind {kind!r}{did_you_mean(str(kind), KINDS)} (kinds: {', '.join(KINDS)})"
        )
        issues.append(_field_issue(file, check_name, item, "kind", line, problem))
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
    message = _check_sentence(error)

    top = loc[0] if loc else None
    in_defaults = isinstance(top, str) and top in from_defaults
    if in_defaults:
        line = path_line(defaults, loc) or item_line
        field_name = f"defaults.{field_path}"
        check = None
    else:
        line = path_line(item, loc) or item_line
        field_name = field_path
        check = check_name

    if kind_of == "extra_forbidden" and isinstance(top, str):
        message = (
            "unknown field"
            + did_you_mean(top, tuple(cls.model_fields))
            + _other_kind_hint(top, kind=cls.model_fields["kind"].default)
        )
    elif kind_of == "missing":
        message = "missing required field"
    return Issue(file, check, field_name, line, message)


_BOUND_WORDS = {
    "greater_than_equal": "at least",
    "greater_than": "greater than",
    "less_than_equal": "at most",
    "less_than": "less than",
}


def _check_sentence(error: Mapping[str, Any]) -> str:
    """``yamldoc.sentence``, with the check-name alphabet spelled out and bounds in words."""
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} is not allowed: use lowercase letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    if kind in _BOUND_WORDS:
        limit = next(iter(error.get("ctx", {}).values()), "?")
        return f"must be {_BOUND_WORDS[kind]} {limit}, got {value!r}"
    return sentence(error)


def _other_kind_hint(name: str, kind: str | None = None, defaults_only: bool = False) -> str:
    owners = [k for k, c in CHECK_CLASSES.items() if name in c.model_fields and k != kind]
    if not owners:
        return ""
    if defaults_only:
        return f" ('{name}' is a field of kind {', '.join(owners)}, not a common default)"
    return f" ('{name}' is a field of kind {', '.join(owners)})"
