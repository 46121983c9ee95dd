"""kubelab's images in the local Docker daemon: inspect, import a rootfs, save, load and list.

The steps every recipe of :mod:`kubelab.images` shares, and the ``kubelab image load|ls`` side:
the role the CRI's image service plays for a kubelet, on a daemon that no registry can reach.
Docker SDK errors do not escape: each becomes an :class:`ImageBuildError`
naming the step. The docker SDK is blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

logger = logging.getLogger(__name__)

REPOSITORY_PREFIX = "kubelab/"
"""Every image kubelab builds lives under this repository prefix."""

Progress = Callable[[str], None]
"""Receives one human-readable line per build step (the CLI prints them)."""


class ImageBuildError(RuntimeError):
    """An image could not be built, imported or loaded (the message says which step and why)."""


@dataclass(frozen=True)
class ImageInfo:
    """One tag of a ``kubelab/*`` image, as ``kubelab image ls`` shows it."""

    tag: str
    id: str
    size: int
    """Bytes, as the daemon reports them."""
    created: str


def noop(_: str) -> None:
    """A :data:`Progress` that reports nothing."""


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    """Whether the daemon has an image with exactly this tag."""
    return image_id(client, tag) is not None


def image_id(client: docker.DockerClient, tag: str) -> str | None:
    """The id of the image tagged ``tag``, or None when there is none."""
    try:
        found: str | None = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"cannot inspect image {tag}: {exc}") from exc
    return found


def image_label(client: docker.DockerClient, tag: str, label: str) -> str:
    """The value of ``label`` on the image tagged ``tag`` ("" when absent)."""
    try:
        labels = client.images.get(tag).labels or {}
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"cannot inspect image {tag}: {exc}") from exc
    return str(labels.get(label, ""))


def remove_if_unused(client: docker.DockerClient, image: str) -> None:
    """Drop the image a rebuild untagged, unless a container still uses it (the daemon then refuses)."""
    try:
        client.images.remove(image, noprune=False)
    except docker.errors.APIError as exc:
        logger.debug("kept untagged image %s: %s", image, exc)


def import_tar(client: docker.DockerClient, tar: bytes | Path, tag: str, changes: Sequence[str]) -> None:
    """``docker import`` a rootfs tar (in memory, or a file streamed in chunks) as ``tag``."""
    repository, _, version = tag.rpartition(":")
    try:
        if isinstance(tar, Path):
            # A generator, not the file: the SDK declares a chunked body, and only iterables are sent chunked.
            client.api.import_image_from_stream(_chunks(tar), repository=repository, tag=version, changes=list(changes))
        else:
            client.api.import_image_from_data(tar, repository=repository, tag=version, changes=list(changes))
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker import of {tag} failed: {exc}") from exc
    if not image_exists(client, tag):
        raise ImageBuildError(f"docker import of {tag} reported success but the tag is missing")


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(size):
            yield chunk


def save(client: docker.DockerClient, tags: Sequence[str], path: Path) -> None:
    """Write ``tags`` to a ``docker save`` tar at ``path`` (reloadable with :func:`load`)."""
    try:
        # GET /images/get?names=..: the SDK's get_image() takes one name, `docker save` takes many.
        response = client.api._get(client.api._url("/images/get"), params={"names": list(tags)}, stream=True)
        client.api._raise_for_status(response)
        with Path(path).open("wb") as out:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker save {' '.join(tags)} failed: {exc}") from exc


def load(client: docker.DockerClient, path: Path) -> list[str]:
    """Load a ``docker save`` tar (``docker load -i``); returns the tags it brought in."""
    path = Path(path)
    if not path.is_file():
        raise ImageBuildError(f"{path}: no such file")
    loaded: set[str] = set()
    try:
        with path.open("rb") as stream:  # a file object is streamed, not read into memory
            for message in client.api.load_image(stream):
                if "error" in message:
                    raise ImageBuildError(f"docker load -i {path} failed: {message['error']}")
                line = str(message.get("stream") or "").strip()
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if line.startswith(prefix):
                        loaded.add(line.removeprefix(prefix))
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker load -i {path} failed: {exc}") from exc
    return sorted(loaded)


def list_images(client: docker.DockerClient) -> list[ImageInfo]:
    """Every tag of every ``kubelab/*`` image, sorted by tag."""
    try:
        images = client.images.list(name=f"{REPOSITORY_PREFIX}*")
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"cannot list images: {exc}") from exc
    infos = [
        ImageInfo(tag=tag, id=image.short_id.removeprefix("sha256:"), size=int(image.attrs.get("Size") or 0),
                  created=str(image.attrs.get("Created") or ""))
        for image in images
        for tag in image.tags
        if tag.startswith(REPOSITORY_PREFIX)
    ]  # fmt: skip
    return sorted(infos, key=lambda info: info.tag)
