"""Why a check has no measured state: the one list of ``error_kind`` values, and ``ESError``.

Every UNKNOWN that is not a threshold verdict carries one :class:`ErrorKind`; the API, the
Prometheus ``reason`` label and the docs (docs/checks.md, "Error kinds") use these values and
no others. :class:`ESError` is how the client layer reports a failure upward; it lives here,
not in ``esclient``, so that evaluation stays free of the client libraries.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Why a result is UNKNOWN (or has no value); the value is what the API and metrics show."""

    UNREACHABLE = "unreachable"  # no connection to the cluster
    TIMEOUT = "timeout"  # no answer within the check's timeout
    THROTTLED = "throttled"  # 429/502/503/504 after the bounded retries
    REJECTED = "rejected"  # the cluster refused the query (400: bad query, bad field)
    FORBIDDEN = "forbidden"  # the credentials lack a privilege (403)
    AUTH = "auth"  # the credentials were refused (401)
    NO_SUCH_INDEX = "no_such_index"  # nothing matches the index pattern
    UNAVAILABLE = "unavailable"  # a matched index is closed or has no primary shard
    PARTIAL = "partial"  # some shards failed or had no copy: the number would be low
    UNSUPPORTED = "unsupported"  # not Elasticsearch/OpenSearch, or not the configured flavor
    INTERNAL = "internal"  # an unexpected answer or a bug (planning or evaluating failed)
    NO_DATA = "no_data"  # the query matched nothing to measure
    NO_SUCH_GROUP = "no_such_group"  # a group asked for by the API is not in the result
    PENDING = "pending"  # not evaluated yet since start or reload
    STALE = "stale"  # the last result is older than the check allows


RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses that say "overloaded or unavailable, try again": retried with backoff."""


class ESError(Exception):
    """A failure to get an answer, classified for the operator; never carries a credential."""

    def __init__(self, kind: ErrorKind | str, message: str, status: int | None = None) -> None:
        kind = ErrorKind(kind)
        if not message.strip():  # an answer without a reason still says what happened
            message = f"{kind.value} error, no reason given"
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message

    @property
    def throttled(self) -> bool:
        """Worth retrying after a backoff: the server (or a proxy) said it is overloaded."""
        return self.kind == "throttled" and self.status in RETRY_STATUSES
