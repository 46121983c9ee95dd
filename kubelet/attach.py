"""Attach to a Docker container's main process: the ``pods/attach`` half of ``kubelet.docker_streams``.

``DockerStreams.attach`` calls :func:`attach_container`; ``kubelet.httpserver`` relays the
session over the same remote-command WebSocket as exec (channels 0 stdin, 1 stdout, 2 stderr,
3 Status, 4 resize). Docker's attach API (``POST /containers/{id}/attach?stream=1&stdin=…``)
is opened through the SDK's socket in a worker thread; without a TTY Docker multiplexes stdout
and stderr exactly as for exec, so :class:`kubelet.docker_streams.DockerSocketSession` reads it.

Guarantees: a container that is not running is refused before any stream starts
(:class:`ContainerNotFoundError`, so kubectl falls back to the logs as it does on Kubernetes);
stdin reaches the process only when the container was created with ``stdin: true`` (Docker's
``OpenStdin``); resizes go to the container's TTY; the session's status is Success once the
output ends (the container exited, or its streams closed): kubectl reads the exit code from
the pod's status, as on Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from kubelet.docker_streams import DockerSocketSession
from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_

__all__ = ["DockerAttachSession", "attach_container"]


class DockerAttachSession(DockerSocketSession):
    """A :class:`DockerSocketSession` over an attach socket: resizes the container, no exec id."""

    def __init__(self, api: Any, container_id: str, sock: socket.socket, *, tty: bool) -> None:
        super().__init__(api, "", sock, tty=tty)
        self._container_id = container_id

    async def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._api.resize, self._container_id, height=height, width=width)

    async def wait(self) -> int:
        return 0


async def attach_container(api: Any, container: Any, *, stdin: bool, tty: bool) -> DockerAttachSession:
    """Attach to ``container`` (an SDK container object) through ``api`` (its low-level client)."""

    framing_tty = tty

    def start() -> socket.socket:
        nonlocal framing_tty
        container.reload()
        # Docker frames the stream by the container's own TTY, whatever the client asked for.
        framing_tty = bool((container.attrs.get("Config") or {}).get("Tty"))
        if container.status != "running":
            raise ContainerNotFoundError(f"container {container.labels.get('io.kubernetes.container.name', '')} "
                                         f"is not running (state {container.status})")
        params = {"stdin": 1 if stdin else 0, "stdout": 1, "stderr": 1, "stream": 1}
        raw = api.attach_socket(container.id, params=params)
        sock: socket.socket = raw._sock
        sock.settimeout(None)  # a quiet process must not end the session
        return sock

    try:
        sock = await asyncio.to_thread(start)
    except ContainerNotFoundError:
        raise
    except Exception as err:  # docker.errors.APIError and transport errors stay behind this seam
        raise RuntimeError_(f"failed to attach to the container: {err}") from err
    return DockerAttachSession(api, str(container.id), sock, tty=framing_tty)
