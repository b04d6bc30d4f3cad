"""``_msearch`` lines are encoded once with orjson; what orjson refuses still goes out."""

from __future__ import annotations

import json

from esbridge.esclient import ndjson_line


def test_line_is_compact_json_with_one_newline() -> None:
    line = ndjson_line({"index": "logs-*", "query": {"term": {"name": "café"}}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"index": "logs-*", "query": {"term": {"name": "café"}}}


def test_integers_beyond_64_bits_fall_back_to_the_standard_library() -> None:
    big = 2**70
    line = ndjson_line({"query": {"range": {"n": {"gte": big}}}})
    assert json.loads(line) == {"query": {"range": {"n": {"gte": big}}}}
    assert line.endswith(b"\n") and b" " not in line
