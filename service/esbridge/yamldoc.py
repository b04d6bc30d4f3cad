"""YAML documents with line numbers, and their problems as located sentences.

Check files (``loader``) and the service configuration (``config``) are read the same way:
the size and shape limits are checked on each parser event before the composer takes it
(``parse_yaml``), the round-trip document keeps every key's line (``key_line``,
``path_line``), and a pydantic error becomes a sentence (``sentence``) with a "did you mean"
hint (``did_you_mean``) inside an ``Issue`` that names file, check, field and line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    ScalarEvent,
)
from ruamel.yaml.parser import RoundTripParser

from esbridge import limits
from esbridge.limits import printable

__all__ = [
    "Issue",
    "did_you_mean",
    "item_line",
    "key_line",
    "parse_yaml",
    "path_line",
    "sentence",
    "to_plain",
    "what",
]


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


def parse_yaml(file: str, text: str) -> tuple[Any, Issue | None]:
    """The round-trip document (``None`` when empty), or the located issue that stops it.

    The shape limits are checked on every parser event as the composer takes it, so an alias
    bomb or a deep nesting is refused before the composer builds (or recurses into) it, in
    the same single pass over the text that builds the document.
    """
    yaml = YAML(typ="rt")
    yaml.Parser = _CheckedParser
    yaml.parser.shape = _Shape(file)
    try:
        return yaml.load(text), None
    except _Refused as refused:
        return None, refused.issue
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, DuplicateKeyError):  # ruamel quotes both values: maybe passwords
            problem = problem.split(" with value ", 1)[0]
        if exc.context and exc.problem and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        return None, Issue(file, None, None, line, f"invalid YAML: {problem}")
    except YAMLError as exc:
        return None, Issue(file, None, None, None, f"invalid YAML: {exc}")


class _Refused(Exception):
    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class _CheckedParser(RoundTripParser):
    """ruamel's round-trip parser whose every event passes the shape limits first."""

    shape: _Shape

    def get_event(self) -> Any:
        event = super().get_event()
        problem = self.shape.feed(event)
        if problem is not None:
            raise _Refused(problem)
        return event


class _Shape:
    """Depth and size after alias expansion, counted event by event (nothing is built).

    The composer is recursive and ``to_plain`` copies every alias: a few hundred bytes of
    nested aliases ("billion laughs") or a few hundred nested brackets would take minutes,
    gigabytes or the Python stack. Counting events refuses such files at once, naming the
    check and field where the path is known (``checks[i].query_dsl...``).
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.sizes: dict[str, int] = {}
        self.frames: list[_Frame] = [_Frame(None, False)]
        self.names: dict[int, str] = {}  # check position -> name, as far as read

    def issue(self, event: Any, message: str) -> Issue:
        line = event.start_mark.line + 1 if event.start_mark else None
        path = [f.key for f in self.frames[1:] if f.key is not None]
        check = field_name = None
        if len(path) >= 2 and path[0] == "checks" and isinstance(path[1], int):
            check = self.names.get(path[1])
            field_name = ".".join(str(p) for p in path[2:3]) or None
        elif path:
            field_name = ".".join(str(p) for p in path[:2])
        return Issue(self.file, check, field_name, line, message)

    def feed(self, event: Any) -> Issue | None:
        """Take one parser event; the issue when it breaks a limit."""
        frames = self.frames
        top = frames[-1]
        if isinstance(event, AliasEvent):
            top.count += self.sizes.get(str(event.anchor), 1)
            top.advance()
        elif isinstance(event, CollectionStartEvent):
            frames.append(_Frame(event.anchor, isinstance(event, MappingStartEvent)))
            if len(frames) - 1 > limits.MAX_NESTING_DEPTH:
                return self.issue(event, f"nested deeper than {limits.MAX_NESTING_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            done = frames.pop()
            if done.anchor is not None:
                self.sizes[str(done.anchor)] = done.count
            frames[-1].count += done.count
            frames[-1].advance()
        elif isinstance(event, ScalarEvent):
            value = event.value or ""
            if top.mapping and top.expect_key:
                top.key = value
                top.expect_key = False
                return None  # keys are not counted as values
            top.count += 1
            if event.anchor is not None:
                self.sizes[str(event.anchor)] = 1
            digits = value.lstrip("+-")
            if event.style is None and len(digits) > 100 and digits.isdigit():
                return self.issue(
                    event,
                    f"a number with {len(digits)} digits is too large "
                    f"(numbers must lie within ±{limits.MAX_ABS_NUMBER:.0e})",
                )
            if top.key == "name" and len(frames) == 4 and frames[1].key == "checks":
                index = frames[2].key
                if isinstance(index, int):
                    self.names[index] = value
            top.advance()
        if top.count > limits.MAX_YAML_NODES or frames[0].count > limits.MAX_YAML_NODES:
            return self.issue(
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


# --- pydantic errors -> sentences ------------------------------------------------------------


_PREFIXES = ("Value error, ", "Assertion failed, ")


def sentence(error: Mapping[str, Any], show_value: bool = True) -> str:
    """A pydantic error (``exc.errors()`` item) as a sentence for an operator.

    Our validators' own messages lose pydantic's "Value error, " prefix; sizes and choices are
    said plainly; pydantic's "Input should be ..." becomes "should be ..., got <value>"
    (``show_value=False``: never the value, for secrets).
    """
    msg = str(error.get("msg", "invalid value"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "too_long":
        ctx = error.get("ctx", {})
        return f"too many items: at most {ctx.get('max_length')}, got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        least = error.get("ctx", {}).get("min_length")
        return "must not be empty" if least == 1 else f"too short (at least {least} characters)"
    if kind == "string_too_long":
        return f"too long (at most {error.get('ctx', {}).get('max_length')} characters)"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{value!r} is not allowed; use {expected}"
    if msg.startswith("Input should be"):
        msg = "should be" + msg[len("Input should be") :]
        if show_value and value is not None and not isinstance(value, dict | list):
            msg += f", got {value!r}"
    return msg


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


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
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()  # 2024-06-01, as written (a timestamp is refused where JSON)
    if isinstance(value, TaggedScalar) and _tag_text(value) == "tag:yaml.org,2002:str":
        return str(value.value)  # !!str 5: the YAML way to say "a text"
    return value


def _tag_text(value: TaggedScalar) -> str:
    tag = value.tag
    return str(getattr(tag, "value", tag))


def key_line(mapping: Any, key: Any) -> int | None:
    """1-based line of ``key`` in a round-trip mapping, if known."""
    try:
        return mapping.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return None


def item_line(seq: Any, index: int) -> int | None:
    """1-based line of item ``index`` in a round-trip list, if known."""
    try:
        return seq.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def path_line(node: Any, loc: Sequence[Any]) -> int | None:
    """Line of the deepest key of ``loc`` that exists in the YAML node."""
    line = None
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            line = key_line(node, part) or line
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = item_line(node, part) or line
            node = node[part]
        else:
            break
    return line


def what(value: Any) -> str:
    """What a YAML value is, for "found ..." in a message."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"
