"""Service variables in containers (kubelet.envvars): KUBERNETES_SERVICE_* always, the pod
namespace's Services unless enableServiceLinks is false, overridable by the container's env."""

from __future__ import annotations

from typing import Any

import pytest

from kubelet.envvars import PodContext, prepare_container, service_variables


def _svc(name: str, ns: str, ip: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = _svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443, "protocol": "TCP"})
WEB = _svc("my-web", "team", "10.96.0.20", {"name": "http", "port": 80, "protocol": "TCP"},
           {"port": 53, "protocol": "UDP"})
HEADLESS = _svc("headless", "team", "None", {"port": 80})


class Source:
    def __init__(self, services: list[dict[str, Any]]) -> None:
        self.services = services

    async def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return [s for s in self.services if s["metadata"]["namespace"] == namespace]

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


def test_variables_of_one_service() -> None:
    assert dict(service_variables([WEB])) == {
        "MY_WEB_SERVICE_HOST": "10.96.0.20", "MY_WEB_SERVICE_PORT": "80", "MY_WEB_SERVICE_PORT_HTTP": "80",
        "MY_WEB_PORT": "tcp://10.96.0.20:80",
        "MY_WEB_PORT_80_TCP": "tcp://10.96.0.20:80", "MY_WEB_PORT_80_TCP_PROTO": "tcp",
        "MY_WEB_PORT_80_TCP_PORT": "80", "MY_WEB_PORT_80_TCP_ADDR": "10.96.0.20",
        "MY_WEB_PORT_53_UDP": "udp://10.96.0.20:53", "MY_WEB_PORT_53_UDP_PROTO": "udp",
        "MY_WEB_PORT_53_UDP_PORT": "53", "MY_WEB_PORT_53_UDP_ADDR": "10.96.0.20",
    }
    assert service_variables([HEADLESS]) == []


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "team"}, "spec": spec}


@pytest.mark.parametrize("links,has_web", [pytest.param(None, True, id="default-on"),
                                           pytest.param(False, False, id="links-off")])
async def test_container_env(links: bool | None, has_web: bool) -> None:
    spec = {} if links is None else {"enableServiceLinks": links}
    container = {"name": "c", "env": [{"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
                                      {"name": "KUBERNETES_SERVICE_PORT", "value": "8443"}]}
    prepared = await prepare_container(_pod(**spec), container, Source([KUBERNETES, WEB, HEADLESS]), PodContext())
    env = {e["name"]: e["value"] for e in prepared["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_PORT_443_TCP_PORT"] == "443"
    assert env["API"] == "https://10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "8443"
    assert ("MY_WEB_SERVICE_HOST" in env) is has_web
    assert not any(k.startswith("HEADLESS_") for k in env)
