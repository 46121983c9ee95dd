"""``kubelab mesh ...``: the service mesh from the command line (``istioctl``'s verbs for what meshd does).

``kubelab.cli`` adds these subcommands with :func:`add_mesh_commands`. ``kubelab mesh inject -f
FILE`` prints FILE's manifests with the sidecar injected into every Pod and pod template
(:func:`meshd.control.injector.inject_manifest`), like ``istioctl kube-inject``: nothing is sent to
a cluster, so the output can be reviewed, committed or piped to ``kubectl apply -f -``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_mesh_commands", "cmd_mesh_inject"]


def add_mesh_commands(commands: Any) -> None:
    mesh = commands.add_parser("mesh", help="service mesh tools (istioctl's verbs)")
    verbs = mesh.add_subparsers(dest="mesh_command", required=True, metavar="COMMAND")
    _add_inject(verbs)


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
