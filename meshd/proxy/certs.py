"""The workload certificate: key in memory, CSR to meshd's ``Certificates.Certify``, rotation at half-life.

:class:`CertManager` owns the proxy's identity material. On start (and at every rotation) it makes
a fresh ECDSA P-256 key that never leaves the pod (made in a child process, see
:mod:`meshd.proxy.keygen`, and kept in memory only), sends a CSR with the projected
service-account token over TLS (meshd verified against the mesh root under the name
``istiod.istio-system.svc``), and rebuilds the TLS contexts (:mod:`meshd.proxy.mtls`).

Rotation: at ``start + life * (0.5 ± 0.02)`` (Istio's half-life with jitter), where ``start`` is
the later of ``not_before`` and the moment the certificate arrived (a CA backdates ``not_before``
for clock skew, which would otherwise put a short leaf's half-life in the past). A failed
renewal is retried with capped exponential backoff while the current certificate keeps serving;
only once it has expired do new connections fail. ``istio_agent_cert_expiry_seconds`` (seconds
left) is exported by :mod:`meshd.proxy.telemetry`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meshd.api.protocol import CERTIFY_METHOD, CertifyRequest, CertifyResponse, deserializer, serializer
from meshd.api.resources import ResourceError
from meshd.proxy.grpcclient import Channel, GrpcError
from meshd.proxy.keygen import KeygenError, leaf_validity, make_key_and_csr
from meshd.proxy.mtls import TlsContexts, build_contexts, load_chain
from meshd.proxy.settings import ProxySettings

__all__ = ["CertManager", "CertificateError", "meshd_channel"]

log = logging.getLogger(__name__)


class CertificateError(Exception):
    """meshd did not sign (unreachable, refused, or returned something unusable)."""


def meshd_channel(target: str, settings: ProxySettings, root_pem: bytes, *, chain_pem: bytes | None = None,
                  key_pem: bytes | None = None) -> Channel:
    """A gRPC channel to meshd at ``host:port`` over TLS (mTLS when a workload certificate is given)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=root_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    if chain_pem and key_pem:
        load_chain(ctx, chain_pem, key_pem)
    host, _, port = target.rpartition(":")
    return Channel(host.strip("[]"), int(port), ssl_context=ctx, server_name=settings.meshd_server_name)


@dataclass(frozen=True)
class Leaf:
    """The current leaf certificate's validity."""

    not_valid_before_utc: datetime.datetime
    not_valid_after_utc: datetime.datetime


class CertManager:
    """Current certificate and contexts; :meth:`run` keeps them fresh."""

    def __init__(self, settings: ProxySettings, *, rng: random.Random | None = None,
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self.chain_pem: bytes = b""
        self.key_pem: bytes = b""
        self.leaf: Leaf | None = None
        self.received: datetime.datetime | None = None
        """When the current certificate arrived."""
        self.contexts: TlsContexts | None = None
        self.rotations = 0
        self.ready = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []
        """Called after each new certificate (the xDS client reconnects with it lazily)."""

    @property
    def root_pem(self) -> bytes:
        return Path(self.settings.root_cert_path).read_bytes()

    def expiry_seconds(self) -> float:
        if self.leaf is None:
            return 0.0
        return (self.leaf.not_valid_after_utc - self._clock()).total_seconds()

    async def certify(self) -> None:
        """Get a new certificate now (raises :class:`CertificateError`)."""
        identity = self.settings.identity
        try:
            key_pem, csr_pem = await make_key_and_csr(identity.uri, identity.trust_domain)
        except (KeygenError, OSError) as exc:
            raise CertificateError(str(exc)) from None
        try:
            token = Path(self.settings.token_path).read_text().strip()
            root_pem = self.root_pem
        except OSError as exc:
            raise CertificateError(f"cannot read the token or the mesh root: {exc}") from None
        request = CertifyRequest(csr=csr_pem, token=token,
                                 validity_seconds=self.settings.cert_validity_seconds)
        try:
            channel = meshd_channel(self.settings.ca_address, self.settings, root_pem)
        except (ValueError, ssl.SSLError) as exc:
            raise CertificateError(f"Certify: bad address or root: {exc}") from None
        try:
            await channel.connect()
            reply = await channel.unary(CERTIFY_METHOD, serializer(request), timeout=10)
            response = deserializer(CertifyResponse)(reply)
        except (GrpcError, TimeoutError, ResourceError) as exc:
            raise CertificateError(f"Certify: {exc or type(exc).__name__}") from None
        finally:
            channel.close()
        if not response.cert_chain:
            raise CertificateError("Certify: empty certificate chain")
        chain = response.cert_chain
        # The chain is leaf first, root last; we present leaf + intermediates.
        presented = chain[:-1] if len(chain) > 1 else chain
        chain_pem = "".join(c if c.endswith("\n") else c + "\n" for c in presented).encode()
        try:
            leaf = Leaf(*leaf_validity(chain[0]))
            contexts = build_contexts(chain_pem, key_pem, root_pem)
        except (KeygenError, ValueError, OSError) as exc:
            raise CertificateError(f"Certify: unusable certificate: {exc}") from None
        self.chain_pem, self.key_pem, self.leaf, self.contexts = chain_pem, key_pem, leaf, contexts
        self.received = self._clock()
        self.rotations += 1
        self.ready.set()
        log.info("workload certificate for %s valid until %s", identity.uri, leaf.not_valid_after_utc.isoformat())
        for callback in self.listeners:
            callback()

    def next_rotation_delay(self) -> float:
        """Seconds until the rotation point (half of the granted life, ±2 % jitter)."""
        assert self.leaf is not None
        start = max(self.leaf.not_valid_before_utc, self.received or self.leaf.not_valid_before_utc)
        life = (self.leaf.not_valid_after_utc - start).total_seconds()
        at = start + datetime.timedelta(seconds=life * (0.5 + self._rng.uniform(-0.02, 0.02)))
        return max(0.0, (at - self._clock()).total_seconds())

    async def run(self) -> None:
        """Certify until it works, then rotate forever (cancel to stop)."""
        backoff = 0.2
        while True:
            if self.leaf is not None:
                await asyncio.sleep(self.next_rotation_delay())
            while True:
                try:
                    await self.certify()
                    backoff = 0.2
                    break
                except CertificateError as exc:
                    log.warning("%s; retrying in %.1fs (current certificate: %.0fs left)", exc, backoff,
                                self.expiry_seconds())
                    await asyncio.sleep(backoff * self._rng.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, 30.0)
