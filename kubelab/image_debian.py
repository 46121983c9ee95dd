"""The Debian images, ``kubelab/python:3.11`` and ``kubelab/nginx:1.22``: a bookworm rootfs from mmdebstrap.

Called by :mod:`kubelab.images`, which lists these tags with the others and decides when to build. Each recipe runs
``mmdebstrap`` (variant essential, merged-usr and eatmydata hooks, docs removed) into a tar, then
``docker import``: about 20 s each on two cores. The apt sources are the host's sources *file*,
passed as mmdebstrap's mirror argument and deleted from the rootfs afterwards, so no mirror host
name is written by this module or kept in an image.

* python -- ``python3`` (full, for ``json``) and Debian's ``iptables``; ``python`` is Python 3,
  as in the official image. The proxy and app images build FROM it (:data:`SITE_PACKAGES`).
* nginx -- ``nginx-light``, shaped like the official image: the default site serves
  ``/usr/share/nginx/html``, logs go to the container's stdout/stderr, and a stop is SIGQUIT.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import docker
import docker.errors

from kubelab.image_store import ImageBuildError, Progress, import_tar

PYTHON = "kubelab/python:3.11"
NGINX = "kubelab/nginx:1.22"

APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEBIAN_SUITE = "bookworm"  # python3 3.11, nginx 1.22, busybox 1.35: the tags follow from it
MMDEBSTRAP_HOOKS = Path("/usr/share/mmdebstrap/hooks")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SITE_PACKAGES = "/usr/local/lib/python3.11/dist-packages"  # on the Debian python3's sys.path

NGINX_INDEX = (
    "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
    "<body><h1>Welcome to nginx!</h1><p>kubelab/nginx:1.22</p></body></html>\n"
)


def mmdebstrap_command(packages: Sequence[str], output: Path, extra_hooks: Sequence[str] = ()) -> list[str]:
    """The mmdebstrap invocation writing a rootfs tar with ``packages`` to ``output``."""
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
        command = mmdebstrap_command(packages, rootfs, extra_hooks)
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
        import_tar(client, rootfs, tag, changes)


def build_python(client: docker.DockerClient, progress: Progress) -> None:
    """Build :data:`PYTHON`."""
    changes = ['CMD ["/usr/bin/python3"]', f"ENV PATH={SYSTEM_PATH}"]
    # As the official image: ``python`` is Python 3.
    _build_debian(client, PYTHON, ["python3", "iptables"], changes, progress, ['ln -sf python3 "$1"/usr/bin/python'])


def build_nginx(client: docker.DockerClient, progress: Progress) -> None:
    """Build :data:`NGINX`."""
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
