"""Container images without a registry: ``kubelab/busybox:1.35``, ``kubelab/python:3.11``, ``kubelab/nginx:1.22``,
``kubelab/proxyv2:<kubelab version>``.

Called by ``kubelab image build|load|ls`` (:mod:`kubelab.cli`), by tests through :func:`ensure_images`, and by
anything that packages a Python program as a pod image (:func:`build_app_image`). Nothing here pulls: the
images are assembled on this host and handed to the local Docker daemon.

* busybox -- a tar built in memory from Debian's dynamically linked ``busybox`` and its shared libraries
  (every applet linked, scripts for ``wget -T``, ``nc -z``, ``printenv`` and ``nslookup``, ``/etc/passwd``
  with ``root`` and uid 1337 ``proxy``; see :mod:`kubelab.image_busybox`), then ``docker import``: well
  under a second.
* python, nginx -- a Debian bookworm rootfs from ``mmdebstrap`` (variant essential, merged-usr and eatmydata
  hooks, docs removed), then ``docker import``: about 20 s each on two cores. The apt sources are the
  host's sources *file*, passed as mmdebstrap's mirror argument and deleted from the rootfs afterwards, so no
  mirror host name is written by this module or kept in an image.
* app images -- ``FROM kubelab/python:3.11``; requirements are installed on the host with
  ``pip install --target`` and copied in, so the build needs no network.
* proxyv2 -- the mesh sidecar and its ``istio-init`` step: ``FROM kubelab/python:3.11`` (which has
  Debian's ``iptables``) with the proxy's dependencies at the host's installed versions
  (``pip install --target``) and the ``meshd.api`` and ``meshd.proxy`` packages; entrypoint
  ``python3 -m meshd.proxy``, user 1337 (the injector runs ``istio-init`` as root). The image is
  labelled with a hash of the packaged source, so a changed proxy rebuilds it.

Guarantees: builds are idempotent (an existing tag is kept unless ``force``, or unless it was built by an
older recipe: every image carries the label ``kubelab.dev/recipe`` with its recipe's revision from
:data:`RECIPES`, bumped whenever a recipe changes what an image does); tags are the upstream
versions, never ``latest``; a failed build leaves no tag behind and raises :class:`ImageBuildError`
(docker SDK errors do not escape). The docker SDK is blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import logging
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from kubelab.image_busybox import BUSYBOX_BINARY, PROXY_UID, BusyboxError, busybox_rootfs_tar

__all__ = [
    "BUSYBOX",
    "IMAGES",
    "NGINX",
    "PROXYV2",
    "PYTHON",
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
]

logger = logging.getLogger(__name__)

REPOSITORY_PREFIX = "kubelab/"
BUSYBOX = "kubelab/busybox:1.35"
PYTHON = "kubelab/python:3.11"
NGINX = "kubelab/nginx:1.22"
PROXYV2 = "kubelab/proxyv2:0.1.0"
"""The mesh sidecar image (tag: kubelab's version); the injector's default."""
IMAGES: dict[str, str] = {"busybox": BUSYBOX, "python": PYTHON, "nginx": NGINX, "proxyv2": PROXYV2}
"""Short name (``kubelab image build NAME``) -> tag."""
RECIPE_LABEL = "kubelab.dev/recipe"
SOURCE_LABEL = "kubelab.dev/source"
"""On images that package kubelab code: a hash of that code (a mismatch rebuilds the image)."""
RECIPES: dict[str, int] = {BUSYBOX: 4, PYTHON: 2, NGINX: 3, PROXYV2: 2}
"""Tag -> revision of its recipe (nginx 2: stopped with SIGQUIT; nginx 3: serves /usr/share/nginx/html;
python 2: ``python``; busybox 3: ``printenv``, ``wget -T`` and ``nc -z`` scripts; busybox 4: the dynamic
build, whose ``sh`` runs those scripts too, and ``nslookup`` with the search list).
An image labelled otherwise is rebuilt."""
PROXY_REQUIREMENTS = ("orjson", "grpcio", "httptools", "cryptography", "uvloop", "h2")
"""What ``meshd.proxy`` imports beyond the standard library (pinned to the host's installed versions)."""
PROXY_PACKAGES = ("meshd/__init__.py", "meshd/api", "meshd/proxy")
"""The kubelab source copied into the proxy image (relative to the repository root)."""
HOST_LIBDIR = Path("/usr/lib") / (sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
PROXY_HOST_LIBRARIES = ("libstdc++.so.6",)
"""Shared libraries grpcio needs that the python image lacks, copied from this (bookworm) host's
``libstdc++6`` package: the same distribution as the image, so the same file apt would install."""

APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEBIAN_SUITE = "bookworm"  # python3 3.11, nginx 1.22, busybox 1.35: the tags above follow from it
MMDEBSTRAP_HOOKS = Path("/usr/share/mmdebstrap/hooks")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SITE_PACKAGES = "/usr/local/lib/python3.11/dist-packages"  # on the Debian python3's sys.path

Progress = Callable[[str], None]
"""Receives one human-readable line per build step (the CLI prints them)."""

NGINX_INDEX = (
    "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
    "<body><h1>Welcome to nginx!</h1><p>kubelab/nginx:1.22</p></body></html>\n"
)


class ImageBuildError(RuntimeError):
    """An image could not be built, imported or loaded (the message says which step and why)."""


@dataclass(frozen=True)
class BuildResult:
    """Outcome of one ``build_*`` call."""

    tag: str
    built: bool
    """False when the tag already existed and was kept."""
    seconds: float


@dataclass(frozen=True)
class ImageInfo:
    """One tag of a ``kubelab/*`` image, as ``kubelab image ls`` shows it."""

    tag: str
    id: str
    size: int
    """Bytes, as the daemon reports them."""
    created: str


def _noop(_: str) -> None:
    pass


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    """Whether the daemon has an image with exactly this tag."""
    return _image_id(client, tag) is not None


def _image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        image_id: str | None = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"cannot inspect image {tag}: {exc}") from exc
    return image_id


def _recipe_of(client: docker.DockerClient, tag: str) -> str:
    """The ``kubelab.dev/recipe`` label of ``tag`` ("" when absent)."""
    try:
        labels = client.images.get(tag).labels or {}
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"cannot inspect image {tag}: {exc}") from exc
    return str(labels.get(RECIPE_LABEL, ""))


def _label_recipe(client: docker.DockerClient, tag: str) -> None:
    """Stamp ``tag`` with its recipe revision (a one-line build on top: metadata only, no layer)."""
    dockerfile = f"FROM {tag}\nLABEL {RECIPE_LABEL}={RECIPES[tag]}\n"
    try:
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise ImageBuildError(f"{tag}: docker build (recipe label) failed: {exc}") from exc


def _remove_if_unused(client: docker.DockerClient, image_id: str) -> None:
    """Drop the image a rebuild untagged, unless a container still uses it (the daemon then refuses)."""
    try:
        client.images.remove(image_id, noprune=False)
    except docker.errors.APIError as exc:
        logger.debug("kept untagged image %s: %s", image_id, exc)


def _import_tar(client: docker.DockerClient, tar: bytes | Path, tag: str, changes: Sequence[str]) -> None:
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


# --- busybox ---------------------------------------------------------------------------------------------


def _build_busybox(client: docker.DockerClient, progress: Progress) -> None:
    progress(f"{BUSYBOX}: packing {BUSYBOX_BINARY}, its libraries and its applets")
    try:
        tar = busybox_rootfs_tar()
    except BusyboxError as exc:
        raise ImageBuildError(f"{BUSYBOX}: {exc}") from exc
    progress(f"{BUSYBOX}: docker import ({len(tar) / 1e6:.1f} MB)")
    _import_tar(client, tar, BUSYBOX, ['CMD ["/bin/sh"]', "ENV PATH=/bin:/usr/bin"])


# --- Debian rootfs images (mmdebstrap) ---------------------------------------------------------------------


def _mmdebstrap_command(packages: Sequence[str], output: Path, extra_hooks: Sequence[str] = ()) -> list[str]:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError("mmdebstrap is not installed: run scripts/setup (apt-get install mmdebstrap)")
    if not APT_SOURCES.is_file():
        raise ImageBuildError(f"{APT_SOURCES} is missing: the build reads the host's apt sources from it")
    return [
        mmdebstrap, "--quiet", "--variant=essential", f"--include={','.join(packages)}",
        f"--hook-dir={MMDEBSTRAP_HOOKS / 'merged-usr'}", f"--hook-dir={MMDEBSTRAP_HOOKS / 'eatmydata'}",
        '--customize-hook=rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/* '
        '"$1"/usr/share/info/*',
        *(f"--customize-hook={hook}" for hook in extra_hooks),
        # The pasted sources file names the host's mirror: it must not ship in the image.
        '--customize-hook=rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*',
        DEBIAN_SUITE, str(output), str(APT_SOURCES),
    ]  # fmt: skip


def _build_debian(
    client: docker.DockerClient,
    tag: str,
    packages: Sequence[str],
    changes: Sequence[str],
    progress: Progress,
    extra_hooks: Sequence[str] = (),
) -> None:
    with tempfile.TemporaryDirectory(prefix="kubelab-image-") as workdir:
        rootfs = Path(workdir) / "rootfs.tar"
        command = _mmdebstrap_command(packages, rootfs, extra_hooks)
        progress(f"{tag}: mmdebstrap {DEBIAN_SUITE} --include={','.join(packages)} (about 20 s)")
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ImageBuildError(f"{tag}: mmdebstrap failed to run: {exc}") from exc
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise ImageBuildError(f"{tag}: mmdebstrap exited with {result.returncode}:\n{tail}")
        progress(f"{tag}: rootfs ready in {time.monotonic() - started:.1f}s "
                 f"({rootfs.stat().st_size / 1e6:.0f} MB), docker import")
        _import_tar(client, rootfs, tag, changes)


def _build_python(client: docker.DockerClient, progress: Progress) -> None:
    changes = ['CMD ["/usr/bin/python3"]', f"ENV PATH={SYSTEM_PATH}"]
    # As the official image: ``python`` is Python 3.
    _build_debian(client, PYTHON, ["python3", "iptables"], changes, progress, ['ln -sf python3 "$1"/usr/bin/python'])


def _build_nginx(client: docker.DockerClient, progress: Progress) -> None:
    index = NGINX_INDEX.replace("'", "")
    hooks = [
        # Like the official image: the default site serves /usr/share/nginx/html (/var/www/html points there).
        'mkdir -p "$1"/usr/share/nginx/html && rm -rf "$1"/var/www/html',
        'ln -s /usr/share/nginx/html "$1"/var/www/html',
        "sed -i 's#root /var/www/html;#root /usr/share/nginx/html;#' \"$1\"/etc/nginx/sites-available/default",
        f"printf '%s' '{index}' > \"$1\"/usr/share/nginx/html/index.html",
        # Like the official image: logs go to the container's stdout/stderr.
        'ln -sf /dev/stdout "$1"/var/log/nginx/access.log && ln -sf /dev/stderr "$1"/var/log/nginx/error.log',
    ]
    changes = ['CMD ["nginx", "-g", "daemon off;"]', f"ENV PATH={SYSTEM_PATH}", "EXPOSE 80"]
    _build_debian(client, NGINX, ["nginx-light"], changes, progress, hooks)
    # As the official image: a stop is nginx's graceful shutdown (SIGQUIT finishes the requests in
    # flight; SIGTERM drops them). ``docker import`` cannot set it, a one-line build on top can.
    try:
        client.images.build(fileobj=io.BytesIO(f"FROM {NGINX}\nSTOPSIGNAL SIGQUIT\n".encode()), tag=NGINX,
                            rm=True, pull=False)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise ImageBuildError(f"{NGINX}: docker build (STOPSIGNAL) failed: {exc}") from exc


def _source_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _source_files() -> list[Path]:
    root = _source_root()
    files: list[Path] = []
    for entry in PROXY_PACKAGES:
        path = root / entry
        found = [path] if path.is_file() else sorted(path.rglob("*.py"))
        files.extend(p for p in found if "__pycache__" not in p.parts)
    return files


def source_hash() -> str:
    """A hash of the proxy image's kubelab source (paths and contents)."""
    digest = hashlib.sha256()
    root = _source_root()
    for path in _source_files():
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _pinned_requirements() -> list[str]:
    pins = []
    for name in PROXY_REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _build_proxyv2(client: docker.DockerClient, progress: Progress) -> None:
    if not image_exists(client, PYTHON):
        build_image(client, PYTHON, progress=progress)
    root = _source_root()
    with tempfile.TemporaryDirectory(prefix="kubelab-proxyv2-") as workdir:
        context = Path(workdir)
        for path in _source_files():
            target = context / "src" / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        for library in PROXY_HOST_LIBRARIES:
            found = (HOST_LIBDIR / library).resolve()
            if not found.is_file():
                raise ImageBuildError(f"{PROXYV2}: {HOST_LIBDIR / library} is missing on this host (apt-get install "
                                      "libstdc++6)")
            (context / "lib").mkdir(exist_ok=True)
            shutil.copyfile(found, context / "lib" / library)
        requirements = _pinned_requirements()
        progress(f"{PROXYV2}: pip install --target (host) {' '.join(requirements)}")
        _pip_install(requirements, context / "site")
        for junk in [*(context / "site").glob("*.dist-info"), *(context / "site").rglob("__pycache__"),
                     *(context / "site").glob("bin")]:
            shutil.rmtree(junk, ignore_errors=True)
        lines = [f"FROM {PYTHON}", f"COPY lib/ {HOST_LIBDIR}/", f"COPY site/ {SITE_PACKAGES}/",
                 f"COPY src/ {SITE_PACKAGES}/",
                 f"LABEL {SOURCE_LABEL}={source_hash()}", "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
                 f'USER {PROXY_UID}:{PROXY_UID}', 'ENTRYPOINT ["python3", "-m", "meshd.proxy"]', "CMD []"]
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        progress(f"{PROXYV2}: docker build FROM {PYTHON}")
        try:
            client.images.build(path=str(context), tag=PROXYV2, rm=True, forcerm=True, pull=False)
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            raise ImageBuildError(f"{PROXYV2}: docker build failed: {exc}") from exc


def _source_of(client: docker.DockerClient, tag: str) -> str:
    try:
        labels = client.images.get(tag).labels or {}
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"cannot inspect image {tag}: {exc}") from exc
    return str(labels.get(SOURCE_LABEL, ""))


_BUILDERS: dict[str, Callable[[docker.DockerClient, Progress], None]] = {
    BUSYBOX: _build_busybox,
    PYTHON: _build_python,
    NGINX: _build_nginx,
    PROXYV2: _build_proxyv2,
}
_SOURCE_HASHES: dict[str, Callable[[], str]] = {PROXYV2: source_hash}
"""Images that package kubelab code: rebuilt when the code changed."""


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
    report = progress or _noop
    started = time.monotonic()
    previous = _image_id(client, tag)
    if previous is not None and not force:
        recipe = _recipe_of(client, tag)
        source = _SOURCE_HASHES.get(tag)
        stale_source = source is not None and _source_of(client, tag) != source()
        if recipe == str(RECIPES[tag]) and not stale_source:
            report(f"{tag}: present, skipped (use --force to rebuild)")
            return BuildResult(tag=tag, built=False, seconds=time.monotonic() - started)
        if stale_source:
            report(f"{tag}: its packaged source changed, rebuilding")
        else:
            report(f"{tag}: built by recipe {recipe or 'without a revision'}, rebuilding with recipe {RECIPES[tag]}")
    _BUILDERS[tag](client, report)
    _label_recipe(client, tag)
    if previous is not None and previous != _image_id(client, tag):
        _remove_if_unused(client, previous)
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


# --- app images ----------------------------------------------------------------------------------------------


def _pip_install(requirements: Sequence[str] | Path, target: Path) -> None:
    spec = ["-r", str(requirements)] if isinstance(requirements, Path) else list(requirements)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--target", str(target), *spec]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageBuildError(f"pip install --target failed to run: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise ImageBuildError(f"pip install --target {' '.join(spec)} exited with {result.returncode}:\n{tail}")


def build_app_image(
    client: docker.DockerClient,
    tag: str,
    source_dir: Path,
    *,
    base: str = PYTHON,
    requirements: Sequence[str] | Path | None = None,
    command: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> str:
    """Build ``tag`` FROM ``base`` with ``source_dir`` copied to ``/app`` (the working directory).

    ``requirements`` (specifiers, or a requirements file) are installed on the host with
    ``pip install --target`` and copied onto the image's ``sys.path``. ``command`` becomes CMD; by default
    ``python3 -u /app/main.py`` when ``source_dir/main.py`` exists, else the base image's CMD.
    Docker's layer cache makes an unchanged rebuild cheap. Returns the image id.
    """
    report = progress or _noop
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise ImageBuildError(f"{tag}: source directory {source_dir} does not exist")
    if tag.endswith(":latest") or ":" not in tag.rpartition("/")[2]:
        raise ImageBuildError(f'{tag}: give an explicit version tag (never "latest")')
    if not image_exists(client, base):
        raise ImageBuildError(f"{tag}: base image {base} is missing (kubelab image build)")
    if command is None and (source_dir / "main.py").is_file():
        command = ["python3", "-u", "/app/main.py"]
    with tempfile.TemporaryDirectory(prefix="kubelab-app-") as workdir:
        context = Path(workdir)
        shutil.copytree(source_dir, context / "app",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))  # fmt: skip
        (context / "site").mkdir()
        if requirements:
            report(f"{tag}: pip install --target (host) {requirements}")
            _pip_install(requirements, context / "site")
        lines = [f"FROM {base}", f"COPY site/ {SITE_PACKAGES}/", "COPY app/ /app/", "WORKDIR /app"]
        if command is not None:
            lines.append(f"CMD {_json_list(command)}")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        report(f"{tag}: docker build FROM {base}")
        try:
            image, _ = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            raise ImageBuildError(f"{tag}: docker build failed: {exc}") from exc
    image_id: str = image.id or ""
    report(f"{tag}: built {image_id[:19]}")
    return image_id


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items))


# --- save / load / list ------------------------------------------------------------------------------------------


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
