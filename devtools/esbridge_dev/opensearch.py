"""A real OpenSearch on demand: the Elasticsearch harness with OpenSearch's distribution.

OpenSearch is fetched from Maven Central as ``org.opensearch.distribution.integ-test-zip:
opensearch`` (only ``transport-netty4``: no security plugin, so security is simply absent),
unpacked into the same cache folder and started exactly like Elasticsearch: one node on
127.0.0.1, as the unprivileged user ``esbridge-es`` when run as root. 2.19.x runs on Java 17;
3.x needs Java 21+ (e.g. the Temurin JDK under ``/usr/lib/jvm``).

Python use::

    from esbridge_dev.opensearch import OpenSearchServer, OS3
    with OpenSearchServer(version=OS3) as server:
        print(server.url)

CLI (same commands as ``esbridge_dev.elasticsearch``)::

    python -m esbridge_dev.opensearch start [--version 2.19.6|3.8.0|2|3] [--port N]
    python -m esbridge_dev.opensearch status|url|stop|fetch
"""

from __future__ import annotations

import sys
from typing import Any

from esbridge_dev.elasticsearch import Distribution, ElasticsearchServer
from esbridge_dev.elasticsearch import main as _main

OS2 = "2.19.6"
OS3 = "3.8.0"  # the newest 3.x the Maven mirror serves (3.9.0 is not served)
DEFAULT_VERSION = OS2

OPENSEARCH = Distribution(
    "opensearch",
    "OpenSearch",
    "org.opensearch.distribution.integ-test-zip",
    {"2": OS2, "3": OS3, OS2: OS2, OS3: OS3},
    DEFAULT_VERSION,
    3,
    "OPENSEARCH",
)


def OpenSearchServer(version: str | None = None, **kwargs: Any) -> ElasticsearchServer:
    """An :class:`ElasticsearchServer` running OpenSearch (same lifecycle and fault helpers)."""
    return ElasticsearchServer(version=version, dist=OPENSEARCH, **kwargs)


def main(argv: list[str] | None = None) -> int:
    return _main(argv, dist=OPENSEARCH)


if __name__ == "__main__":
    sys.exit(main())
