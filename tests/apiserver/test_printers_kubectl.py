"""The real kubectl prints our pod Tables exactly as it prints a real cluster's.

A tiny aiohttp server on 127.0.0.1 serves legacy discovery (built from the resource registry)
and a pod list as a ``meta.k8s.io/v1`` Table; ``kubectl.1.32 get pods`` (plain, ``-o wide``,
``-A``) must print Kubernetes' header and rows.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from apiserver.printing import to_table
from machinery.resources import RESOURCES, group_versions, lookup

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(not os.access(KUBECTL, os.X_OK), reason="kubectl 1.32 is not installed"),
]


def _stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pods() -> list[dict[str, Any]]:
    """A running pod in default and a crash-looping one in kube-system (created 5m ago)."""
    web_pod = {
        "metadata": {
            "name": "web-abc",
            "namespace": "default",
            "uid": "u1",
            "resourceVersion": "11",
            "creationTimestamp": _stamp(timedelta(minutes=5)),
            "labels": {"app": "web"},
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "nginx", "image": "nginx"}]},
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.0.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "nginx", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        },
    }
    dns_pod = {
        "metadata": {
            "name": "dns-xyz",
            "namespace": "kube-system",
            "uid": "u2",
            "resourceVersion": "12",
            "creationTimestamp": _stamp(timedelta(minutes=5)),
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "dns", "image": "dns"}]},
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.0.8"}],
            "containerStatuses": [
                {
                    "name": "dns",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        },
    }
    return [web_pod, dns_pod]


def _discovery_app() -> web.Application:
    """Legacy discovery plus ``pods`` lists (as a Table when asked for one)."""
    app = web.Application()

    async def version(_: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
        )

    async def api(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }
        )

    async def apis(_: web.Request) -> web.Response:
        groups = [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
            }
            for g, v in group_versions()
            if g
        ]
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    def resource_list(group: str, version: str) -> dict[str, Any]:
        gv = f"{group}/{version}" if group else version
        resources = [
            {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
                "shortNames": list(r.short_names),
                "categories": list(r.categories),
            }
            for r in RESOURCES
            if (r.group, r.version) == (group, version)
        ]
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    async def core_v1(_: web.Request) -> web.Response:
        return web.json_response(resource_list("", "v1"))

    async def group_v1(request: web.Request) -> web.Response:
        return web.json_response(resource_list(request.match_info["group"], request.match_info["version"]))

    async def pods(request: web.Request) -> web.Response:
        namespace = request.match_info.get("namespace")
        items = [p for p in _pods() if namespace is None or p["metadata"]["namespace"] == namespace]
        resource = lookup("", "v1", "pods")
        assert resource is not None
        if "as=Table" in request.headers.get("Accept", ""):
            body = to_table(
                resource, items, resource_version="12", include_object=request.query.get("includeObject", "")
            )
        else:
            body = {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "12"},
                "items": items,
            }
        return web.json_response(body)

    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", core_v1)
    app.router.add_get("/apis/{group}/{version}", group_v1)
    app.router.add_get("/api/v1/pods", pods)
    app.router.add_get("/api/v1/namespaces/{namespace}/pods", pods)
    return app


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    runner = web.AppRunner(_discovery_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert runner.addresses
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _kubectl(server: str, tmp_path: Path, *args: str) -> str:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--server={server}",
        "--cache-dir",
        str(tmp_path / "cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode()


def _layout(rows: list[list[str]]) -> str:
    """kubectl's tab-writer layout: columns padded to max(6, widest cell + 3), last one unpadded."""
    widths = [max(6, max(len(row[i]) for row in rows) + 3) for i in range(len(rows[0]) - 1)]
    lines = [
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1] for row in rows
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["get", "pods"],
            [
                ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                ["web-abc", "1/1", "Running", "0", "5m"],
            ],
            id="get-pods",
        ),
        pytest.param(
            ["get", "pods", "-o", "wide"],
            [
                [
                    "NAME",
                    "READY",
                    "STATUS",
                    "RESTARTS",
                    "AGE",
                    "IP",
                    "NODE",
                    "NOMINATED NODE",
                    "READINESS GATES",
                ],
                ["web-abc", "1/1", "Running", "0", "5m", "10.244.0.7", "node-1", "<none>", "<none>"],
            ],
            id="wide",
        ),
        pytest.param(
            ["get", "pods", "-A"],
            [
                ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                ["default", "web-abc", "1/1", "Running", "0", "5m"],
                ["kube-system", "dns-xyz", "0/1", "CrashLoopBackOff", "4", "5m"],
            ],
            id="all-namespaces",
        ),
        pytest.param(
            ["get", "pods", "-A", "--sort-by=.metadata.name"],
            [
                ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                ["kube-system", "dns-xyz", "0/1", "CrashLoopBackOff", "4", "5m"],
                ["default", "web-abc", "1/1", "Running", "0", "5m"],
            ],
            id="sort-by-needs-full-object",
        ),
        pytest.param(
            ["get", "pods", "--show-labels"],
            [
                ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"],
                ["web-abc", "1/1", "Running", "0", "5m", "app=web"],
            ],
            id="show-labels",
        ),
    ],
)
async def test_kubectl_prints_pod_table(
    server_url: str, tmp_path: Path, args: list[str], expected: list[list[str]]
) -> None:
    assert await _kubectl(server_url, tmp_path, *args) == _layout(expected)
