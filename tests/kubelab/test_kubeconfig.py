"""Tests of machinery.kubeconfig: write/load roundtrip, file-path credentials, mutual TLS."""

from __future__ import annotations

import socket
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509

from machinery.kubeconfig import KubeconfigEntry, KubeconfigError, load_kubeconfig, write_kubeconfig
from machinery.pki import ClusterPki, ensure_cluster_pki, identity_from_certificate


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPki:
    return ensure_cluster_pki(tmp_path / "pki")


def _write_admin(pki: ClusterPki, path: Path, server: str = "https://127.0.0.1:6443") -> None:
    write_kubeconfig(
        path,
        server=server,
        ca_pem=pki.ca_pem,
        client_cert_pem=pki.admin_cert.read_bytes(),
        client_key_pem=pki.admin_key.read_bytes(),
    )


def test_roundtrip_embeds_credentials(pki: ClusterPki, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    _write_admin(pki, path)
    entry = load_kubeconfig(path)
    assert entry == KubeconfigEntry(
        context="kubelab",
        server="https://127.0.0.1:6443",
        ca_pem=pki.ca_pem,
        client_cert_pem=pki.admin_cert.read_bytes(),
        client_key_pem=pki.admin_key.read_bytes(),
    )
    document = yaml.safe_load(path.read_text())
    assert document["current-context"] == "kubelab"
    assert set(document["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rewrite_replaces_the_file(pki: ClusterPki, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    _write_admin(pki, path, server="https://127.0.0.1:1111")
    _write_admin(pki, path, server="https://127.0.0.1:2222")
    assert load_kubeconfig(path).server == "https://127.0.0.1:2222"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_file_path_credentials_resolve_relative_to_the_kubeconfig(pki: ClusterPki, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://x:1", "certificate-authority": "pki/ca.crt"}}],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate": str(pki.admin_cert),
                    "client-key": str(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u"}},
            {"name": "b", "context": {"cluster": "c"}},
        ],
    }
    path.write_text(yaml.safe_dump(document))
    entry = load_kubeconfig(path)
    assert (entry.ca_pem, entry.client_cert_pem) == (pki.ca_pem, pki.admin_cert.read_bytes())
    other = load_kubeconfig(path, context="b")
    assert (other.context, other.client_cert_pem, other.ca_pem) == ("b", None, pki.ca_pem)


@pytest.mark.parametrize(
    ("content", "context", "message"),
    [
        pytest.param(None, None, "cannot read", id="missing-file"),
        pytest.param("[1, 2", None, "not valid YAML", id="bad-yaml"),
        pytest.param("kind: Config\n", None, "no current-context", id="no-context"),
        pytest.param("kind: Config\ncontexts: []\n", "nope", "no context named 'nope'", id="unknown-context"),
        pytest.param(
            "contexts: [{name: a, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n",
            "a",
            "has no server",
            id="no-server",
        ),
    ],
)
def test_load_errors(tmp_path: Path, content: str | None, context: str | None, message: str) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KubeconfigError, match=message):
        load_kubeconfig(path, context=context)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def mtls_server(pki: ClusterPki) -> AsyncIterator[str]:
    """An HTTPS server with the apiserver certificate that requires client certificates."""

    async def whoami(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        assert der is not None
        user, groups = identity_from_certificate(x509.load_der_x509_certificate(der))
        return web.Response(text=f"{user} {','.join(groups)}")

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=pki.server_ssl_context(require_client_cert=True))
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _get(url: str, context: ssl.SSLContext) -> str:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        return await response.text()


async def test_mutual_tls_handshake_identifies_the_admin(pki: ClusterPki, tmp_path: Path, mtls_server: str) -> None:
    _write_admin(pki, tmp_path / "kubeconfig", server=mtls_server)
    entry = load_kubeconfig(tmp_path / "kubeconfig")
    assert await _get(f"{entry.server}/whoami", entry.ssl_context()) == "kubernetes-admin system:masters"


@pytest.mark.parametrize(
    "break_entry",
    [
        pytest.param(lambda e, other: replace(e, client_cert_pem=None, client_key_pem=None), id="no-client-cert"),
        pytest.param(lambda e, other: replace(e, ca_pem=other.ca_pem), id="server-not-from-trusted-ca"),
        pytest.param(
            lambda e, other: replace(
                e,
                client_cert_pem=other.admin_cert.read_bytes(),
                client_key_pem=other.admin_key.read_bytes(),
            ),
            id="client-cert-from-other-ca",
        ),
    ],
)
async def test_mutual_tls_refuses(
    pki: ClusterPki,
    tmp_path: Path,
    mtls_server: str,
    break_entry: object,
) -> None:
    other = ensure_cluster_pki(tmp_path / "other-pki")
    _write_admin(pki, tmp_path / "kubeconfig", server=mtls_server)
    entry = break_entry(load_kubeconfig(tmp_path / "kubeconfig"), other)  # type: ignore[operator]
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await _get(f"{entry.server}/whoami", entry.ssl_context())
