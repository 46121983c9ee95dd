"""Container images without a registry: ``kubelab/busybox:1.35``, ``kubelab/python:3.11``, ``kubelab/nginx:1.22``,
``kubelab/proxyv2:<kubelab version>``.

Called by ``kubelab image build|load|ls`` (:mod:`kubelab.image_cli`), by tests through :func:`ensure_images`, and by
anything that packages a Python program as a pod image (:func:`build_app_image`). Nothing here pulls: the
images are assembled on this host and handed to the local Docker daemon.

This module is the catalogue: the tags, which recipe builds each, and when a tag is (re)built. The recipes
and the machinery they share live beside it:

* busybox -- a tar built in memory from Debian's dynamically linked ``busybox`` and its shared libraries
  (every applet linked, scripts for ``wget -T``, ``nc -z``, ``printenv`` and ``nslookup``, ``/etc/passwd``
  with ``root`` and uid 1337 ``proxy``; see :mod:`kubelab.image_busybox`), then ``docker import``: well
  under a second.
* python, nginx -- a Debian bookworm rootfs from ``mmdebstrap``, then ``docker import``: about 20 s each on
  two cores; no mirror host name is written by the build or kept in an image (:mod:`kubelab.image_debian`).
* app images -- ``FROM kubelab/python:3.11``; requirements are installed on the host with
  ``pip install --target`` and copied in, so the build needs no network (:mod:`kubelab.image_app`).
* proxyv2 -- the mesh sidecar and its ``istio-init`` step, ``FROM kubelab/python:3.11`` with the proxy's
  dependencies and the ``meshd.api`` and ``meshd.proxy`` packages (:mod:`kubelab.image_proxyv2`). The
  image is labelled with a hash of the packaged source, so a changed proxy rebuilds it.
* inspect, import, save, load and list against the daemon -- :mod:`kubelab.image_store`.

Guarantees: builds are idempotent (an existing tag is kept unless ``force``, or unless it was built by an
older recipe: every image carries the label ``kubelab.dev/recipe`` with its recipe's revision from
:data:`RECIPES`, bumped whenever a recipe changes what an image does); tags are the upstream
versions, never ``latest``; a failed build leaves no tag behind and raises :class:`ImageBuildError`
(docker SDK errors do not escape). The docker SDK is blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import docker
import docker.errors

from kubelab.image_app import build_app_image
from kubelab.image_busybox import BUSYBOX_BINARY, BusyboxError, busybox_rootfs_tar
from kubelab.image_debian import NGINX, PYTHON, build_nginx, build_python
from kubelab.image_proxyv2 import PROXYV2, SOURCE_LABEL, build_proxyv2, source_hash
from kubelab.image_store import (
    REPOSITORY_PREFIX,
    ImageBuildError,
    ImageInfo,
    Progress,
    image_exists,
    image_id,
    image_label,
    import_tar,
    list_images,
    load,
    noop,
    remove_if_unused,
    save,
)

__all__ = [
    "BUSYBOX",
    "IMAGES",
    "NGINX",
    "PROXYV2",
    "PYTHON",
    "RECIPES",
    "RECIPE_LABEL",
    "REPOSITORY_PREFIX",
    "SOURCE_LABEL",
    "BuildResult",
    "ImageBuildError",
    "ImageInfo",
    "Progress",
    "build_app_image",
    "build_image",
    "busybox_rootfs_tar",
    "ensure_images",
    "image_exists",
    "list_images",
    "load",
    "save",
    "source_hash",
]

logger = logging.getLogger(__name__)

BUSYBOX = "kubelab/busybox:1.35"
IMAGES: dict[str, str] = {"busybox": BUSYBOX, "python": PYTHON, "nginx": NGINX, "proxyv2": PROXYV2}
"""Short name (``kubelab image build NAME``) -> tag."""
RECIPE_LABEL = "kubelab.dev/recipe"
RECIPES: dict[str, int] = {BUSYBOX: 4, PYTHON: 2, NGINX: 3, PROXYV2: 2}
"""Tag -> revision of its recipe (nginx 2: stopped with SIGQUIT; nginx 3: serves /usr/share/nginx/html;
python 2: ``python``; busybox 3: ``printenv``, ``wget -T`` and ``nc -z`` scripts; busybox 4: the dynamic
build, whose ``sh`` runs those scripts too, and ``nslookup`` with the search list).
An image labelled otherwise is rebuilt."""


@dataclass(frozen=True)
class BuildResult:
    """Outcome of one ``build_*`` call."""

    tag: str
    built: bool
    """False when the tag already existed and was kept."""
    seconds: float


def _build_busybox(client: docker.DockerClient, progress: Progress) -> None:
    progress(f"{BUSYBOX}: packing {BUSYBOX_BINARY}, its libraries and its applets")
    try:
        tar = busybox_rootfs_tar()
    except BusyboxError as exc:
        raise ImageBuildError(f"{BUSYBOX}: {exc}") from exc
    progress(f"{BUSYBOX}: docker import ({len(tar) / 1e6:.1f} MB)")
    import_tar(client, tar, BUSYBOX, ['CMD ["/bin/sh"]', "ENV PATH=/bin:/usr/bin"])


_BUILDERS: dict[str, Callable[[docker.DockerClient, Progress], None]] = {
    BUSYBOX: _build_busybox,
    PYTHON: build_python,
    NGINX: build_nginx,
    PROXYV2: build_proxyv2,
}
_BASES: dict[str, str] = {PROXYV2: PYTHON}
"""Images built FROM another of :data:`IMAGES`: the base is built first when it is missing."""
_SOURCE_HASHES: dict[str, Callable[[], str]] = {PROXYV2: source_hash}
"""Images that package kubelab code: rebuilt when the code changed."""


def _label_recipe(client: docker.DockerClient, tag: str) -> None:
    """Stamp ``tag`` with its recipe revision (a one-line build on top: metadata only, no layer)."""
    dockerfile = f"FROM {tag}\nLABEL {RECIPE_LABEL}={RECIPES[tag]}\n"
    try:
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise ImageBuildError(f"{tag}: docker build (recipe label) failed: {exc}") from exc


def _resolve(name: str) -> str:
    if name in IMAGES:
        return IMAGES[name]
    if name in _BUILDERS:
        return name
    known = ", ".join(sorted(IMAGES))
    raise ImageBuildError(f'unknown image "{name}": one of {known} (or their tags)')


def build_image(
    client: docker.DockerClient, name: str, *, force: bool = False, progress: Progress | None = None
) -> BuildResult:
    """Build one of :data:`IMAGES` (by short name or tag) unless its tag exists and ``force`` is false."""
    tag = _resolve(name)
    report = progress or noop
    started = time.monotonic()
    previous = image_id(client, tag)
    if previous is not None and not force:
        recipe = image_label(client, tag, RECIPE_LABEL)
        source = _SOURCE_HASHES.get(tag)
        stale_source = source is not None and image_label(client, tag, SOURCE_LABEL) != source()
        if recipe == str(RECIPES[tag]) and not stale_source:
            report(f"{tag}: present, skipped (use --force to rebuild)")
            return BuildResult(tag=tag, built=False, seconds=time.monotonic() - started)
        if stale_source:
            report(f"{tag}: its packaged source changed, rebuilding")
        else:
            report(f"{tag}: built by recipe {recipe or 'without a revision'}, rebuilding with recipe {RECIPES[tag]}")
    base = _BASES.get(tag)
    if base is not None and not image_exists(client, base):
        build_image(client, base, progress=report)
    _BUILDERS[tag](client, report)
    _label_recipe(client, tag)
    if previous is not None and previous != image_id(client, tag):
        remove_if_unused(client, previous)
    seconds = time.monotonic() - started
    report(f"{tag}: built in {seconds:.1f}s")
    logger.info("built image %s in %.1fs", tag, seconds)
    return BuildResult(tag=tag, built=True, seconds=seconds)


def ensure_images(
    client: docker.DockerClient,
    names: Iterable[str] = tuple(IMAGES),
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> list[BuildResult]:
    """Make sure every named image exists (short names or tags); cheap when they all do."""
    return [build_image(client, name, force=force, progress=progress) for name in names]
