"""The mesh sidecar image ``kubelab/proxyv2``: ``meshd.proxy`` and its ``istio-init`` step, FROM the python image.

Called by :mod:`kubelab.images` (which builds :data:`~kubelab.image_debian.PYTHON` first when it is
missing, and rebuilds this image when :func:`source_hash` no longer matches its
:data:`SOURCE_LABEL`). The image holds the proxy's dependencies at the host's installed versions
(``pip install --target`` on the host, see :mod:`kubelab.image_app`), the ``meshd.api`` and
``meshd.proxy`` packages with the one machinery module the latter uses (``machinery.meshcapture``),
and the shared libraries grpcio needs that the python image lacks;
the python image brings Debian's ``iptables`` for ``istio-init``. Entrypoint
``python3 -m meshd.proxy``, user 1337 (the injector runs ``istio-init`` as root). Every package is
compiled to bytecode at build time (the container never writes any): a sidecar that compiled its
modules at each start would add that time to every meshed pod's start.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import sysconfig
import tempfile
from pathlib import Path

import docker
import docker.errors

from kubelab.image_app import pip_install
from kubelab.image_busybox import PROXY_UID
from kubelab.image_debian import PYTHON, SITE_PACKAGES
from kubelab.image_store import ImageBuildError, Progress

PROXYV2 = "kubelab/proxyv2:0.1.0"
"""The mesh sidecar image (tag: kubelab's version); the injector's default."""
SOURCE_LABEL = "kubelab.dev/source"
"""On images that package kubelab code: a hash of that code (a mismatch rebuilds the image)."""
PROXY_REQUIREMENTS = ("orjson", "grpcio", "httptools", "cryptography", "uvloop", "h2")
"""What ``meshd.proxy`` imports beyond the standard library (pinned to the host's installed versions)."""
PROXY_PACKAGES = ("machinery/__init__.py", "machinery/meshcapture.py", "meshd/__init__.py", "meshd/api",
                  "meshd/proxy")
"""The kubelab source copied into the proxy image (relative to the repository root)."""
HOST_LIBDIR = Path("/usr/lib") / (sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
PROXY_HOST_LIBRARIES = ("libstdc++.so.6",)
"""Shared libraries grpcio needs that the python image lacks, copied from this (bookworm) host's
``libstdc++6`` package: the same distribution as the image, so the same file apt would install."""


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


_RECIPE = "2"
"""Bumped when the build steps change, so that existing images are rebuilt (part of the hash)."""


def source_hash() -> str:
    """A hash of the proxy image's kubelab source (paths and contents) and of its build recipe."""
    digest = hashlib.sha256(f"recipe {_RECIPE}\0".encode())
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


def build_proxyv2(client: docker.DockerClient, progress: Progress) -> None:
    """Build :data:`PROXYV2` FROM :data:`~kubelab.image_debian.PYTHON` (which must exist)."""
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
        pip_install(requirements, context / "site")
        for junk in [*(context / "site").glob("*.dist-info"), *(context / "site").rglob("__pycache__"),
                     *(context / "site").glob("bin")]:
            shutil.rmtree(junk, ignore_errors=True)
        lines = [f"FROM {PYTHON}", f"COPY lib/ {HOST_LIBDIR}/", f"COPY site/ {SITE_PACKAGES}/",
                 f"COPY src/ {SITE_PACKAGES}/", f"RUN python3 -m compileall -q {SITE_PACKAGES}",
                 f"LABEL {SOURCE_LABEL}={source_hash()}", "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
                 f'USER {PROXY_UID}:{PROXY_UID}', 'ENTRYPOINT ["python3", "-m", "meshd.proxy"]', "CMD []"]
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        progress(f"{PROXYV2}: docker build FROM {PYTHON}")
        try:
            client.images.build(path=str(context), tag=PROXYV2, rm=True, forcerm=True, pull=False)
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            raise ImageBuildError(f"{PROXYV2}: docker build failed: {exc}") from exc
