"""``python -m meshd.proxy``: the sidecar's entry point (flags and environment → settings → run).

Start order matters for the pod's start time: the app containers wait for the sidecar's startup
probe, whose first try comes as soon as the container runs. So the ready port is bound and
listening first, before anything else is imported (that probe then waits in the backlog, and
:mod:`meshd.proxy.health` answers it the moment the proxy is ready, instead of it being refused
and retried a ``periodSeconds`` later); then the settings are read, the child that makes the first
key and CSR is launched, and only then is the rest of the proxy imported.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

from meshd.api.identity import READY_PORT


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` (the last one), without argparse's import."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _listen(argv: Sequence[str]) -> tuple[socket.socket, tuple[str, int]] | None:
    """The ready port, bound and listening, and its address (None when that fails: the proxy binds
    it later and reports the error there)."""
    try:
        address = (_flag(argv, "--bind-address") or "0.0.0.0", int(_flag(argv, "--ready-port") or READY_PORT))
    except ValueError:
        return None
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock, address


def main() -> None:
    early = _listen(sys.argv[1:])
    from meshd.proxy import keygen
    from meshd.proxy.settings import from_env

    settings = from_env()
    ready_socket = None
    if early is not None:
        ready_socket, address = early
        if address != (settings.bind_address, settings.ready_port):  # pragma: no cover -- same flags, same parse
            ready_socket.close()
            ready_socket = None
    keygen.prestart(settings.identity.uri, settings.identity.trust_domain)
    from meshd.proxy.proxy import run

    sys.exit(run(settings, ready_socket=ready_socket))


if __name__ == "__main__":
    main()
