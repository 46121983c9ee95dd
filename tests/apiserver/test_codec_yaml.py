"""YAML request bodies (``application/yaml``, ``application/apply-patch+yaml``) in :mod:`apiserver.codec`.

kubectl's server-side apply sends a JSON document under the YAML media type; it must decode as
JSON (which YAML includes) with the same result as a YAML parser, and real YAML must still work.
"""

from __future__ import annotations

import pytest

from apiserver.codec import parse_body
from machinery.errors import BadRequestError

APPLY = "application/apply-patch+yaml"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"kind": "ConfigMap", "data": {"a": "1"}, "n": 2}',
                     {"kind": "ConfigMap", "data": {"a": "1"}, "n": 2}, id="json-object"),
        pytest.param(b'  \n{"spec": {"ratio": 0.5, "on": true, "none": null}}',
                     {"spec": {"ratio": 0.5, "on": True, "none": None}}, id="json-after-whitespace"),
        pytest.param(b"{kind: ConfigMap, data: {a: '1'}}", {"kind": "ConfigMap", "data": {"a": "1"}},
                     id="yaml-flow-mapping"),
        pytest.param(b"kind: ConfigMap\ndata:\n  a: '1'\n  b: [x, y]\n",
                     {"kind": "ConfigMap", "data": {"a": "1", "b": ["x", "y"]}}, id="yaml-block"),
    ],
)
def test_yaml_bodies_decode(body: bytes, expected: object) -> None:
    assert parse_body(body, APPLY) == expected
    assert parse_body(body, "application/yaml") == expected


@pytest.mark.parametrize("body", [pytest.param(b"{a: [1, 2", id="unclosed"),
                                  pytest.param(b"a: b: c", id="bad-mapping")])
def test_malformed_yaml_is_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequestError, match="error decoding YAML"):
        parse_body(body, APPLY)
