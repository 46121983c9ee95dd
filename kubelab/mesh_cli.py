"""``kubelab mesh ...``: the service mesh from the command line (``istioctl``'s verbs for what meshd does).

``kubelab.cli`` adds these subcommands with :func:`add_mesh_commands`:

* ``kubelab meshd`` runs the mesh control plane in the foreground (:mod:`meshd.control.server`);
  ``kubelab up`` starts it under the supervisor (:func:`start_meshd`) unless ``--no-mesh``.
* ``kubelab mesh proxy-status`` prints what each connected sidecar has, per resource type, like
  ``istioctl proxy-status``: SYNCED, NOT SENT, STALE, or NACKED with the proxy's message. It
  reads meshd's debug endpoint on 127.0.0.1 (its port is in ``<state dir>/meshd/debug.port``).
* ``kubelab mesh inject -f FILE`` prints FILE's manifests with the sidecar injected into every Pod and pod template
(:func:`meshd.control.injector.inject_manifest`), like ``istioctl kube-inject``: nothing is sent to
a cluster, so the output can be reviewed, committed or piped to ``kubectl apply -f -``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["MESHD", "add_mesh_commands", "cmd_mesh_inject", "cmd_mesh_proxy_status", "cmd_meshd", "start_meshd"]

MESHD = "meshd"
"""The process name under the supervisor (pid file, log) and the state subdirectory."""


def add_mesh_commands(commands: Any) -> None:
    mesh = commands.add_parser("mesh", help="service mesh tools (istioctl's verbs)")
    verbs = mesh.add_subparsers(dest="mesh_command", required=True, metavar="COMMAND")
    _add_inject(verbs)
    _add_proxy_status(verbs)
    _add_meshd(commands)


def _add_meshd(commands: Any) -> None:
    from meshd.control.settings import DEBUG_PORT, WEBHOOK_PORT

    meshd = commands.add_parser(MESHD, help="run the mesh control plane (istiod's role) in the foreground")
    meshd.add_argument("--kubeconfig", type=Path, required=True, help="the apiserver and meshd's credentials")
    meshd.add_argument("--state-dir", type=Path, required=True, metavar="DIR",
                       help="where the mesh CA lives (keys 0600)")
    meshd.add_argument("--ca-cert", type=Path, default=None, metavar="FILE",
                       help="a root (or intermediate) to sign under, as Istio's cacerts (needs --ca-key)")
    meshd.add_argument("--ca-key", type=Path, default=None, metavar="FILE")
    meshd.add_argument("--bind-address", default="127.0.0.1",
                       help="address of the discovery and webhook servers (the istiod Service's endpoint)")
    meshd.add_argument("--advertise-address", default="", help="address in the istiod Endpoints (default: bind)")
    meshd.add_argument("--discovery-port", type=int, default=15012, metavar="N", help="0 picks a free port")
    meshd.add_argument("--webhook-port", type=int, default=WEBHOOK_PORT, metavar="N", help="0 picks a free port")
    meshd.add_argument("--debug-port", type=int, default=DEBUG_PORT, metavar="N",
                       help="127.0.0.1 port of /metrics and /debug/syncz; 0 picks one (written to debug.port)")
    meshd.add_argument("--proxy-image", default=None, metavar="IMAGE", help="the sidecar image the injector uses")
    meshd.add_argument("--cni", action="store_true",
                       help="CNI mode: no istio-init; the node agents program each meshed pod's capture")
    meshd.add_argument("--max-leaf-seconds", type=int, default=86_400, metavar="S",
                       help="the longest workload certificate signed (default 24 h)")
    meshd.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    meshd.set_defaults(handler=cmd_meshd)


def cmd_meshd(args: argparse.Namespace) -> int:
    import logging

    from meshd.control.ca import CaError
    from meshd.control.server import run
    from meshd.control.settings import MeshdSettings

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.proxy_image is None:
        from kubelab.images import PROXYV2

        args.proxy_image = PROXYV2
    settings = MeshdSettings(
        kubeconfig=args.kubeconfig.expanduser(), state_dir=args.state_dir.expanduser(), ca_cert=args.ca_cert,
        ca_key=args.ca_key, bind_address=args.bind_address, advertise_address=args.advertise_address,
        discovery_port=args.discovery_port, webhook_port=args.webhook_port, debug_port=args.debug_port,
        proxy_image=args.proxy_image, max_leaf_seconds=args.max_leaf_seconds, cni=args.cni)
    try:
        run(settings)
    except CaError as exc:
        print(f"kubelab meshd: {exc}", file=sys.stderr)
        return 1
    return 0


def start_meshd(state_dir: Path, *, bind_address: str, ensure_running: Any, cni: bool = False) -> Any:
    """Apply meshd's RBAC with the admin's credentials, then start ``kubelab meshd`` under the
    supervisor (``ensure_running(name, argv)``); returns its process. Docker clusters bind the pod
    network's gateway on Istio's ports; hollow ones bind loopback on free ports (several test
    clusters share one host)."""
    import asyncio

    from kubelab import launcher
    from machinery.client import ApiClient
    from machinery.errors import ApiError
    from meshd.control.rbac import ISTIOD_GROUPS, ISTIOD_USER, ensure_rbac

    async def apply() -> None:
        async with ApiClient.from_kubeconfig(state_dir / "kubeconfig", user_agent="kubelab-up") as admin:
            await ensure_rbac(admin)

    try:
        asyncio.run(apply())
    except ApiError as exc:
        raise launcher.NotReadyError(f"cannot grant meshd its role: {exc}") from exc
    kubeconfig = launcher.component_kubeconfig(state_dir, MESHD, user=ISTIOD_USER, groups=list(ISTIOD_GROUPS))
    loopback = bind_address.startswith("127.")
    ports = ["--discovery-port", "0", "--webhook-port", "0"] if loopback else []
    return ensure_running(MESHD, launcher.component_command(MESHD, kubeconfig=kubeconfig, extra_args=[
        "--state-dir", str(state_dir / MESHD), "--bind-address", bind_address, "--debug-port", "0", *ports,
        *(["--cni"] if cni else [])]))


def _add_proxy_status(verbs: Any) -> None:
    status = verbs.add_parser("proxy-status", help="what each sidecar has from meshd (istioctl proxy-status)")
    status.add_argument("--state-dir", type=Path, default=Path("~/.kubelab"),
                        help="the cluster's state dir (default: ~/.kubelab)")
    status.add_argument("--debug-url", default="", metavar="URL",
                        help="meshd's debug endpoint (default: 127.0.0.1 and the port meshd wrote)")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(handler=cmd_mesh_proxy_status)


def _status_word(state: dict[str, Any]) -> str:
    word = str(state.get("status") or "NOT SENT")
    return f"NACKED ({state.get('nackMessage', '')})" if word == "NACKED" else word


def cmd_mesh_proxy_status(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from kubelab.output import print_table

    url = args.debug_url.rstrip("/")
    if not url:
        port_file = args.state_dir.expanduser() / MESHD / "debug.port"
        try:
            url = f"http://127.0.0.1:{int(port_file.read_text().strip())}"
        except (OSError, ValueError):
            print(f"error: meshd is not running for {args.state_dir} (no {port_file})", file=sys.stderr)
            return 1
    try:
        with urllib.request.urlopen(f"{url}/debug/syncz", timeout=10) as answer:
            records = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"error: cannot reach meshd at {url}: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(records, indent=2))
        return 0
    rows: list[tuple[str, ...]] = [("NAME", "NAMESPACE", "CLUSTERS", "ROUTES", "LISTENERS", "INBOUND")]
    for record in records:
        types = record.get("types") or {}
        rows.append((str(record.get("pod", "")), str(record.get("namespace", "")),
                     *(_status_word(types.get(t) or {}) for t in ("clusters", "routes", "listeners", "inbound"))))
    if len(rows) == 1:
        print("No proxies are connected.")
        return 0
    print_table(rows)
    return 0


def _add_inject(verbs: Any) -> None:
    inject = verbs.add_parser("inject", help="print manifests with the sidecar injected (istioctl kube-inject)")
    inject.add_argument("-f", "--filename", required=True, metavar="FILE",
                        help="YAML or JSON manifests (several documents allowed; - reads stdin)")
    inject.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml", help="output format")
    inject.add_argument("--proxy-image", default=None, metavar="IMAGE",
                        help="image of istio-init and istio-proxy (default: this version's kubelab/proxyv2)")
    inject.add_argument("--meshd-namespace", default="istio-system", metavar="NS",
                        help="where meshd runs (the sidecars' CA_ADDR is istiod.<NS>.svc:15012)")
    inject.set_defaults(handler=cmd_mesh_inject)


def cmd_mesh_inject(args: argparse.Namespace) -> int:
    import yaml

    from meshd.control.injector import inject_manifest
    from meshd.control.settings import MeshdSettings

    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        print(f"error: {args.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except yaml.YAMLError as exc:
        print(f"error: {args.filename}: not YAML or JSON: {exc}", file=sys.stderr)
        return 1
    if args.proxy_image is None:
        from kubelab.images import PROXYV2

        args.proxy_image = PROXYV2
    settings = MeshdSettings(proxy_image=args.proxy_image, namespace=args.meshd_namespace)
    injected = [inject_manifest(d, settings) if isinstance(d, dict) else d for d in documents]
    if args.output == "json":
        body = injected[0] if len(injected) == 1 else {"apiVersion": "v1", "kind": "List", "items": injected}
        print(json.dumps(body, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump_all(injected, sort_keys=False, default_flow_style=False,
                                            explicit_start=len(injected) > 1))
    return 0
