"""machinery.nodeselector: Kubernetes' NodeSelectorTerm semantics, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from machinery.nodeselector import term_matches

LABELS = {"zone": "a", "cores": "8"}


@pytest.mark.parametrize(("term", "matches"), [
    pytest.param({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}, True, id="in"),
    pytest.param({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, False, id="notin"),
    pytest.param({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]}, True,
                 id="notin-absent"),
    pytest.param({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, True, id="exists"),
    pytest.param({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, False, id="doesnotexist"),
    pytest.param({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}, True, id="gt"),
    pytest.param({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}, False, id="lt"),
    pytest.param({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["4"]}]}, False,
                 id="gt-not-a-number"),
    pytest.param({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}, True,
                 id="field-name"),
    pytest.param({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}, False,
                 id="field-other-name"),
    pytest.param({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
                  "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}, False,
                 id="anded"),
    pytest.param({}, False, id="empty-term-matches-nothing"),
])
def test_term_matches(term: dict[str, Any], matches: bool) -> None:
    assert term_matches(term, "n1", LABELS) is matches
