"""check_esbridge fed garbage, beyond tests/test_plugin.py.

test_plugin.py already covers an HTML page with 200, a cut body, cut headers, non-HTTP
bytes, a silent close, a plain-text 500 and a JSON 503. Here: error answers whose JSON is
truncated or of the wrong shape, an HTML error page from a reverse proxy, binary bytes and
a huge body. Each must give exactly one ``UNKNOWN - ...`` line, bounded, without markup.
"""

from __future__ import annotations

import pytest

from test_plugin import one_unknown_line, plugin, run, server  # noqa: F401  (fixtures)

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("name", "status", "body", "ctype", "expected"),
    [
        ("cutjson", 404, b'{"error": "no check named \'cutjson\'", "did_yo', "application/json",
         "HTTP 404"),
        ("listjson", 503, b'["starting", "up"]', "application/json", "HTTP 503"),
        ("strjson", 503, b'"just a string"', "application/json", "HTTP 503"),
        ("nulljson", 500, b"null", "application/json", "HTTP 500"),
        ("proxy502", 502, HTML_502, "text/html", "HTTP 502"),
        ("binary", 500, b"\x00\xff\xfe garbage \x00" * 10, "application/octet-stream",
         "HTTP 500"),
        ("huge", 500, b"x" * 1_000_000, "text/plain", "HTTP 500"),
    ],
)  # fmt: skip
def test_error_garbage_is_one_unknown_line(
    server,  # noqa: F811
    plugin,  # noqa: F811
    name: str,
    status: int,
    body: bytes,
    ctype: str,
    expected: str,
) -> None:
    server.route(
        f"/api/v1/checks/{name}/nagios", body, status=status, headers={"Content-Type": ctype}
    )
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", name))
    assert expected in line, line
    assert "<" not in line and "\x00" not in line, line
    assert len(line.encode()) <= 1024, len(line)


def test_huge_ok_body_is_bounded(server, plugin) -> None:  # noqa: F811
    """A 200 with a multi-megabyte body (never esbridge's 8 KiB output) is refused, not
    echoed."""
    server.nagios("hugeok", b"OK - " + b"y" * 3_000_000, 0)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "hugeok"))
    assert line.startswith("UNKNOWN - unexpected answer from esbridge: more than"), line
    assert len(line) < 200
