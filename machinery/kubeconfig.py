"""Kubeconfig files: writing the admin kubeconfig and reading any kubeconfig the way kubectl does.

The apiserver writes ``state_dir/kubeconfig`` with :func:`write_kubeconfig` once its port is
bound; ``kubelab up``, the test harness and our own API clients read it back with
:func:`load_kubeconfig` and talk TLS with :meth:`KubeconfigEntry.ssl_context`.

Guarantees: written kubeconfigs embed every credential (``*-data`` fields, base64), are
created with mode 0600 and replaced atomically. Reading accepts embedded data and file paths
(relative paths are resolved against the kubeconfig's directory, as kubectl does), bearer
tokens and ``insecure-skip-tls-verify``.
"""

from __future__ import annotations

import base64
import binascii
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from machinery.pki import write_private_file

__all__ = ["KubeconfigEntry", "KubeconfigError", "load_kubeconfig", "write_kubeconfig"]


class KubeconfigError(ValueError):
    """A kubeconfig is missing, malformed, or lacks the context/cluster/user asked for."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    user: str = "kubernetes-admin",
    cluster: str = "kubelab",
    context: str = "kubelab",
) -> None:
    """Write a single-context kubeconfig with embedded credentials (mode 0600, atomic replace)."""
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
    }
    write_private_file(path, yaml.safe_dump(document, sort_keys=False).encode())


@dataclass(frozen=True)
class KubeconfigEntry:
    """The resolved connection settings of one kubeconfig context."""

    context: str
    server: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: verifies the server by the CA and presents the client certificate.

        Without ``certificate-authority(-data)`` the system trust store is used, as kubectl does.
        """
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode() if self.ca_pem else None
        )
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_pem is not None:
            if self.client_key_pem is None:
                raise KubeconfigError(f"context {self.context!r}: client certificate without a key")
            # ssl can only load a certificate chain from files: use a private, short-lived directory.
            with tempfile.TemporaryDirectory(prefix="kubelab-tls-") as tmp:
                cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                write_private_file(cert_path, self.client_cert_pem)
                write_private_file(key_path, self.client_key_pem)
                context.load_cert_chain(str(cert_path), str(key_path))
        return context


def _named(items: Any, name: str, kind: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(kind)
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f"{path}: no {kind} named {name!r}")


def _credential(section: dict[str, Any], key: str, base: Path, path: Path) -> bytes | None:
    """``<key>-data`` (base64) wins over ``<key>`` (a file path, relative to the kubeconfig)."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except binascii.Error as exc:
            raise KubeconfigError(f"{path}: {key}-data is not valid base64") from exc
    file_name = section.get(key)
    if file_name:
        file_path = Path(str(file_name)).expanduser()
        if not file_path.is_absolute():
            file_path = base / file_path
        try:
            return file_path.read_bytes()
        except OSError as exc:
            raise KubeconfigError(f"{path}: cannot read {key} {file_path}: {exc.strerror}") from exc
    return None


def load_kubeconfig(path: Path, context: str | None = None) -> KubeconfigEntry:
    """Resolve ``context`` (default: ``current-context``) of the kubeconfig at ``path``."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig")
    context_name = context or document.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{path}: no context given and no current-context set")
    context_body = _named(document.get("contexts"), str(context_name), "context", path)
    cluster = _named(document.get("clusters"), str(context_body.get("cluster", "")), "cluster", path)
    user_name = context_body.get("user")
    user = _named(document.get("users"), str(user_name), "user", path) if user_name else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{path}: cluster {context_body.get('cluster')!r} has no server")
    base = path.parent
    token = user.get("token")
    token_file = user.get("tokenFile")
    if not token and token_file:
        token_path = Path(str(token_file)).expanduser()
        token = (token_path if token_path.is_absolute() else base / token_path).read_text().strip()
    return KubeconfigEntry(
        context=str(context_name),
        server=str(server),
        ca_pem=_credential(cluster, "certificate-authority", base, path),
        client_cert_pem=_credential(user, "client-certificate", base, path),
        client_key_pem=_credential(user, "client-key", base, path),
        token=str(token) if token else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
    )
