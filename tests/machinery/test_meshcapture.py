"""Which pods the node agent captures in mesh CNI mode, with which flags, and what the injector writes for it."""

from __future__ import annotations

from typing import Any

import pytest

from machinery.meshcapture import capture_args, node_capture_args, parse_args, redirect_annotations, restore_input

INJECTED = '{"initContainers":["istio-proxy"],"containers":null}'


def meshed(annotations: dict[str, str] | None = None, *, init: tuple[str, ...] = ("istio-proxy",),
           **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": {"sidecar.istio.io/status": INJECTED, **(annotations or {})}},
            "spec": {"initContainers": [{"name": n} for n in init], "containers": [{"name": "app"}], **spec}}


def test_an_injected_pod_without_istio_init_is_captured_with_istio_defaults() -> None:
    args = node_capture_args(meshed())
    assert args == ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
                    "-d", "15090,15021,15020"]
    text = restore_input(parse_args(args)[0])
    assert text.startswith("* nat\n") and "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in text


@pytest.mark.parametrize(
    ("pod", "why"),
    [
        pytest.param({"metadata": {"annotations": {}}, "spec": {"containers": [{"name": "app"}]}}, "not injected",
                     id="plain"),
        pytest.param(meshed(init=("istio-init", "istio-proxy")), "istio-init programs it", id="init-mode"),
        pytest.param(meshed(init=()), "no sidecar", id="no-proxy"),
        pytest.param(meshed(hostNetwork=True), "host network", id="host-network"),
    ],
)
def test_pods_the_node_agent_leaves_alone(pod: dict[str, Any], why: str) -> None:
    assert node_capture_args(pod) is None, why


def test_the_capture_follows_the_redirect_annotations() -> None:
    user = {"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12",
            "traffic.sidecar.istio.io/excludeInboundPorts": "9000",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}
    written = redirect_annotations(user)
    assert written == {
        "sidecar.istio.io/interceptionMode": "REDIRECT",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "",
        "traffic.sidecar.istio.io/includeInboundPorts": "*",
        "traffic.sidecar.istio.io/excludeInboundPorts": "9000",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
    }
    # What istio-init would have been given for the same pod, and what the node agent applies.
    assert node_capture_args(meshed(written)) == capture_args(user)
    flags = dict(zip(capture_args(user)[::2], capture_args(user)[1::2], strict=True))
    assert flags["-i"] == "10.96.0.0/12" and flags["-d"] == "15090,15021,15020,9000" and flags["-o"] == "5432"


def test_an_unsupported_interception_mode_is_an_error_not_a_silent_bypass() -> None:
    with pytest.raises(ValueError, match="TPROXY"):
        node_capture_args(meshed({"sidecar.istio.io/interceptionMode": "TPROXY"}))
