"""``kubelab user add``: a lab user with a namespace, a role in it, and a kubeconfig of their own.

For a teaching cluster: each student gets

* a namespace (default: the user's name), created if missing;
* a RoleBinding ``<user>-<clusterrole>`` in it granting a ClusterRole (default ``edit``) to the
  User — so the student works freely there and is Forbidden everywhere else (a student cannot
  read another student's namespace);
* a client certificate signed by the cluster CA (CN = the user, O = ``kubelab:students``), and
  ``<state-dir>/users/<user>.kubeconfig`` (mode 0600) whose context defaults to that namespace.

Talks to the running apiserver with the admin kubeconfig (``<state-dir>/kubeconfig``); running it
again for the same user re-issues the certificate and leaves the namespace and binding as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from machinery.client import ApiClient
from machinery.errors import AlreadyExistsError, ApiError
from machinery.kubeconfig import write_kubeconfig
from machinery.pki import ensure_cluster_pki, write_private_file
from machinery.resources import NAMESPACES, lookup_kind

STUDENTS_GROUP = "kubelab:students"
RBAC_GROUP = "rbac.authorization.k8s.io"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class UserError(Exception):
    """The user cannot be added (bad name, cluster not running); the message says why."""


@dataclass(frozen=True)
class AddedUser:
    """What ``kubelab user add`` made."""

    name: str
    namespace: str
    cluster_role: str
    kubeconfig: Path


def _check_name(what: str, value: str) -> None:
    if len(value) > 63 or not _NAME.match(value):
        raise UserError(f"{what} {value!r} must be a DNS label: lowercase letters, digits and '-', at most 63")


def _binding(name: str, namespace: str, cluster_role: str) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{name}-{cluster_role}", "namespace": namespace,
                         "labels": {"kubelab.io/user": name}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": name}]}


async def _ensure_objects(admin: Path, name: str, namespace: str, cluster_role: str) -> None:
    role_bindings = lookup_kind(f"{RBAC_GROUP}/v1", "RoleBinding")
    cluster_roles = lookup_kind(f"{RBAC_GROUP}/v1", "ClusterRole")
    assert role_bindings is not None and cluster_roles is not None
    async with ApiClient.from_kubeconfig(admin, user_agent="kubelab-user-add") as client:
        await client.get(cluster_roles, cluster_role)  # NotFound: no such ClusterRole
        try:
            await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": namespace}})
        except AlreadyExistsError:
            pass
        try:
            await client.create(role_bindings, _binding(name, namespace, cluster_role), namespace=namespace)
        except AlreadyExistsError:
            pass


def _write_kubeconfig(state_dir: Path, name: str, namespace: str, groups: list[str], server: str) -> Path:
    pki = ensure_cluster_pki(state_dir / "pki")
    cert_pem, key_pem = pki.issue_client_certificate(name, groups)
    path = state_dir / "users" / f"{name}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_kubeconfig(path, server=server, ca_pem=pki.ca_pem, client_cert_pem=cert_pem, client_key_pem=key_pem,
                     user=name, context=f"{name}@kubelab")
    document = yaml.safe_load(path.read_text())
    document["contexts"][0]["context"]["namespace"] = namespace
    write_private_file(path, yaml.safe_dump(document, sort_keys=False).encode())
    return path


def add_user(state_dir: Path, name: str, *, namespace: str = "", cluster_role: str = "edit",
             groups: list[str] | None = None) -> AddedUser:
    """Create (or refresh) the lab user ``name``; see the module docstring."""
    namespace = namespace or name
    _check_name("user name", name)
    _check_name("namespace", namespace)
    admin = state_dir / "kubeconfig"
    if not admin.exists():
        raise UserError(f"no cluster at {state_dir} (run `kubelab up` first)")
    server = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]["server"]
    asyncio.run(_ensure_objects(admin, name, namespace, cluster_role))
    path = _write_kubeconfig(state_dir, name, namespace, [STUDENTS_GROUP] if groups is None else groups, server)
    return AddedUser(name, namespace, cluster_role, path)


def usage(user: AddedUser) -> str:
    """How to use the new kubeconfig (printed by the CLI)."""
    return (f"user {user.name}: ClusterRole {user.cluster_role} in namespace {user.namespace}\n"
            f"  export KUBECONFIG={user.kubeconfig}\n"
            f"  kubectl auth whoami\n"
            f"  kubectl auth can-i --list\n"
            f"  kubectl create deployment web --image=kubelab/busybox:1.35 -- httpd -f -p 8080\n")


def add_user_commands(commands: Any, add_state_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    """``kubelab user add NAME [--namespace NS] [--clusterrole ROLE]`` (``commands``: the CLI's subparsers)."""
    user = commands.add_parser("user", help="lab users: a namespace, a role in it and a kubeconfig each")
    verbs = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = verbs.add_parser("add", help="create a user's namespace, RoleBinding, certificate and kubeconfig")
    add.add_argument("name", metavar="NAME", help="the user (certificate CN)")
    add.add_argument("--namespace", default="", metavar="NS", help="the user's namespace (default: NAME)")
    add.add_argument("--clusterrole", default="edit", metavar="ROLE",
                     help="ClusterRole granted in the namespace (default: edit)")
    add_state_dir(add)
    add.set_defaults(handler=cmd_user_add)


def cmd_user_add(args: argparse.Namespace) -> int:
    try:
        added = add_user(args.state_dir, args.name, namespace=args.namespace, cluster_role=args.clusterrole)
    except (UserError, ApiError) as exc:
        print(f"kubelab user add: {exc}", file=sys.stderr)
        return 1
    print(usage(added), end="")
    return 0
