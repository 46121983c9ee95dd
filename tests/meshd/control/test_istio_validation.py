"""validation.istio.io for mirroring and outlier detection: Istio's refusals; implemented, so no warning."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.control.istio_validation import validate

ROUTE = {"destination": {"host": "reviews"}}


def _vs(**rule: Any) -> dict[str, Any]:
    return {"spec": {"hosts": ["reviews"], "http": [{"route": [ROUTE], **rule}]}}


def _dr(outlier: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"host": "reviews", "trafficPolicy": {"outlierDetection": outlier},
                     "subsets": [{"name": "v1", "labels": {"version": "v1"},
                                  "trafficPolicy": {"outlierDetection": outlier}}]}}


@pytest.mark.parametrize(("kind", "obj"), [
    pytest.param("VirtualService", _vs(mirror={"host": "reviews", "subset": "v2"}, mirrorPercentage={"value": 5}),
                 id="mirror"),
    pytest.param("VirtualService", _vs(mirrors=[{"destination": {"host": "reviews"}, "percentage": {"value": 50}}]),
                 id="mirrors"),
    pytest.param("DestinationRule", _dr({"consecutive5xxErrors": 3, "consecutiveGatewayErrors": 2, "interval": "5s",
                                         "baseEjectionTime": "30s", "maxEjectionPercent": 100,
                                         "minHealthPercent": 20}), id="outlier"),
])
def test_implemented_fields_pass_without_warnings(kind: str, obj: dict[str, Any]) -> None:
    assert validate(kind, obj) == ([], [])


@pytest.mark.parametrize(("kind", "obj", "message"), [
    pytest.param("VirtualService", _vs(mirror={"host": "reviews"}, mirrorPercentage={"value": 120}),
                 "spec.http[0].mirrorPercentage: mirror_percentage must have a max value of 100 (it has 120.000000)",
                 id="mirror-percentage"),
    pytest.param("VirtualService", _vs(mirror={"subset": "v2"}),
                 "spec.http[0].mirror.host: destination host is required", id="mirror-host"),
    pytest.param("VirtualService", _vs(mirrors=[{"percentage": {"value": 10}}]),
                 "spec.http[0].mirrors[0].destination: destination is required for mirrors", id="mirrors-destination"),
    pytest.param("DestinationRule", _dr({"interval": "soon"}),
                 "spec.trafficPolicy.outlierDetection.interval: invalid duration 'soon'", id="duration"),
    pytest.param("DestinationRule", _dr({"maxEjectionPercent": 101}),
                 "spec.subsets[0].trafficPolicy.outlierDetection.maxEjectionPercent: percentage 101 is not in range "
                 "0..100", id="percent"),
])
def test_invalid_values_are_refused_as_istio_refuses_them(kind: str, obj: dict[str, Any], message: str) -> None:
    errors, _ = validate(kind, obj)
    assert message in errors


def test_an_outlier_field_kubelab_lacks_still_warns() -> None:
    _, warnings = validate("DestinationRule", _dr({"splitExternalLocalOriginErrors": True}))
    assert "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors is accepted but not implemented " \
           "by kubelab" in warnings
