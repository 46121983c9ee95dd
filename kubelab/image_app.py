"""App images: a Python program packaged FROM ``kubelab/python:3.11``, with its requirements, no network.

Called by anything that ships a Python program as a pod image (``examples/shop/build.py``, the
mesh benchmark, in-cluster client tests) through :func:`build_app_image`, and by the proxy image's
recipe (:mod:`kubelab.image_proxyv2`) through :func:`pip_install`. pip cannot reach an index from
inside a build here, so requirements are installed on the host with ``pip install --target`` and
copied onto the image's ``sys.path``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import docker
import docker.errors

from kubelab.image_debian import PYTHON, SITE_PACKAGES
from kubelab.image_store import ImageBuildError, Progress, image_exists, noop


def pip_install(requirements: Sequence[str] | Path, target: Path) -> None:
    """``pip install --target`` on the host: specifiers, or a requirements file."""
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
    report = progress or noop
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
            pip_install(requirements, context / "site")
        lines = [f"FROM {base}", f"COPY site/ {SITE_PACKAGES}/", "COPY app/ /app/", "WORKDIR /app"]
        if command is not None:
            lines.append(f"CMD {json.dumps(list(command))}")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        report(f"{tag}: docker build FROM {base}")
        try:
            image, _ = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
        except (docker.errors.BuildError, docker.errors.APIError) as exc:
            raise ImageBuildError(f"{tag}: docker build failed: {exc}") from exc
    image_id: str = image.id or ""
    report(f"{tag}: built {image_id[:19]}")
    return image_id
