"""Every hard limit esbridge enforces, in one place (documented in docs/checks.md, "Limits").

Check files come from operators, requests from anyone who can reach the port: each limit
turns something that would otherwise exhaust memory, CPU, file descriptors or a date
calculation into a clear error at load time (or a 4xx answer) instead of a failure later.
Values are chosen far above any real use; raising one is a one-line change here.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

# --- check files -------------------------------------------------------------------------

MAX_CHECK_FILE_BYTES = 1_048_576
"""Size of one check file (1 MiB; the largest real files are a few hundred KiB)."""

MAX_CHECKS = 50_000
"""Checks in all files together (10x what the benchmarks run)."""

MAX_YAML_NODES = 200_000
"""Values in one file *after* expanding aliases (``*name``): stops "billion laughs" files."""

MAX_NESTING_DEPTH = 64
"""Depth of nested mappings/lists in one file (query_dsl included); Elasticsearch refuses
deeper queries long before this anyway."""

# --- names and texts ---------------------------------------------------------------------

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
"""One safe alphabet for check names: they become Nagios service names, metric label values,
URL path segments and log fields, so no spaces, quotes, slashes, ``;``, ``|`` or newlines."""

NAME_MAX_LENGTH = 100
NAME_ALPHABET = "lowercase letters, digits, '_', '.' and '-', starting with a letter or digit"

MAX_TEXT_LENGTH = 4_096
"""description, runbook: shown on every status page refresh and in every API answer."""

MAX_QUERY_LENGTH = 65_536
"""A Lucene ``query`` / ``numerator`` / ``denominator`` string."""

MAX_SHORT_TEXT_LENGTH = 256
"""Field names, index patterns, units, tags, label keys and values, cluster names."""

MAX_LIST_ITEMS = 100
"""index patterns, group_by fields, tags, labels, node URLs per check."""

# --- numbers and durations ---------------------------------------------------------------

MAX_ABS_NUMBER = 1e18
"""Threshold endpoints: finite and below Elasticsearch's long range (9.2e18)."""

MAX_INTEGER = 2**63 - 1
"""Integers inside query_dsl: what Elasticsearch can parse as a long."""

MAX_WINDOW = timedelta(days=366)
"""A window longer than a year is a typo (``1000000w`` overflows date arithmetic)."""

MAX_DELAY = timedelta(days=30)
"""Shifting the window back more than a month is a typo too."""

# --- HTTP API ----------------------------------------------------------------------------

MAX_REQUEST_BODY_BYTES = 65_536
"""Request bodies (the API takes none larger than a reload/run call)."""

MAX_HEADER_BYTES = 16_384
"""Request line plus headers (h11's incomplete-event bound)."""

HEADER_READ_TIMEOUT = 10.0
"""Seconds a client has to send its request line and headers (half-sent requests)."""

KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle keep-alive connection stays open."""

MAX_CONNECTIONS = 512
"""Concurrent connections (well under the usual 1,024 open-files limit); beyond it new
requests get 503 and idle ones are closed, so ``/healthz`` keeps answering."""

# --- metric label names --------------------------------------------------------------------

_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")
RESERVED_LABELS = frozenset({"check", "state", "reason", "connection", "le", "job", "instance"})


def label_name(field: str) -> str:
    """A group field as a Prometheus label name: ``host.name`` → ``host_name``.

    Two fields can map to the same label (``a.b`` and ``a_b``); the check models reject
    that at load time, because a duplicate label makes Prometheus drop the whole scrape.
    """
    name = _LABEL_RE.sub("_", field)
    if not name or name[0].isdigit() or name.startswith("__"):
        name = f"group_{name.lstrip('_')}"
    if name in RESERVED_LABELS:
        name = f"group_{name}"
    return name


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for one line of output or log: control characters escaped, length cut."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)


def node_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a search node (None: it can), said after the URL.

    http or https with a host (and a port for http, which the clients require); never
    credentials: a node's URL is shown in errors and results, so ``user:password@`` in it
    would be too. They belong in ``username`` and ``password_file``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if "@" in parts.netloc:
        return (
            "has credentials in it: give them as username and password_file "
            "(node URLs are shown in errors and check results)"
        )
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    if not parts.hostname:
        return "names no host"
    if port is None and parts.scheme == "http":
        return "names no port (e.g. http://host:9200)"
    return None


def check_node_url(url: str) -> str:
    """``url`` when it can name a search node; else ValueError naming it (``shown_url``)."""
    if problem := node_url_problem(url):
        raise ValueError(f"{shown_url(url)!r} {problem}")
    return url


def shown_url(url: str) -> str:
    """``url`` for a message: any ``user:password@`` part replaced by ``***@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


class Slots:
    """At most ``limit`` of something at once (previews, waiting gate requests); one over it
    is refused, not queued, so a flood is answered at once instead of piling up."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def try_enter(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def leave(self) -> None:
        self.taken -= 1
