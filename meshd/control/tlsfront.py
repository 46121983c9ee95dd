"""TLS on meshd's port 15012 with an *optional* client certificate, in front of the gRPC server.

istiod's 15012 serves two kinds of callers on one port: a proxy without a certificate yet (it
calls ``Certify`` over server-only TLS, authenticated by its token) and a proxy with one (it opens
``Discovery.Stream`` over mTLS, authenticated by its SPIFFE certificate). grpcio's server
credentials either never ask for a client certificate or always require one, so meshd terminates
TLS here instead (Python's ``ssl`` with ``CERT_OPTIONAL``: a presented certificate must chain to
the mesh root, none is fine), and forwards each connection's bytes to the gRPC server listening
on a loopback port without TLS. The identity of each connection's client certificate is kept by
the inner connection's local port, which the gRPC server sees as the peer (``ipv4:127.0.0.1:P``):
:meth:`TlsFront.identity_of_peer` maps it back. An inner connection nobody opened through the
front has no identity, so a Discovery stream cannot bypass mTLS by dialling the inner port.

Used by :mod:`meshd.control.push` (the discovery server); ALPN ``h2`` as gRPC requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

from cryptography import x509

from machinery.pki import write_private_file
from meshd.api.identity import SpiffeId

__all__ = ["TlsFront", "spiffe_of_der"]

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024


def spiffe_of_der(der: bytes) -> SpiffeId | None:
    """The SPIFFE ID in a certificate's URI SANs (None when it has none)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        with contextlib.suppress(ValueError):
            return SpiffeId.parse(uri)
    return None


class TlsFront:
    def __init__(self, *, host: str, port: int, chain_pem: bytes, key_pem: bytes, root_pem: str, inner_port: int,
                 work_dir: Path) -> None:
        self.host, self.port, self.inner_port = host, port, inner_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # ssl loads certificates from files only; the key file is written 0600 and removed at once.
        chain_file, key_file = work_dir / "serving-chain.pem", work_dir / ".serving-key.pem"
        write_private_file(chain_file, chain_pem, mode=0o644)
        write_private_file(key_file, key_pem)
        try:
            self.context.load_cert_chain(chain_file, key_file)
        finally:
            key_file.unlink(missing_ok=True)
        self.context.load_verify_locations(cadata=root_pem)
        self.context.verify_mode = ssl.CERT_OPTIONAL
        self.context.set_alpn_protocols(["h2"])
        self._identities: dict[int, SpiffeId | None] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def identity_of_peer(self, peer: str) -> SpiffeId | None:
        """The client certificate's identity of the connection the gRPC server names ``peer``."""
        _, _, port = peer.rpartition(":")
        return self._identities.get(int(port)) if port.isdigit() else None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=self.context,
                                                  ssl_handshake_timeout=10, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        inner_writer: asyncio.StreamWriter | None = None
        local_port = 0
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            identity = spiffe_of_der(der) if der else None
            inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", self.inner_port)
            local_port = inner_writer.get_extra_info("sockname")[1]
            self._identities[local_port] = identity
            await asyncio.gather(_pipe(reader, inner_writer), _pipe(inner_reader, writer))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("tls front: connection ended: %s", exc)
        finally:
            self._identities.pop(local_port, None)
            for w in (writer, inner_writer):
                if w is not None:
                    w.close()
            if task is not None:
                self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
