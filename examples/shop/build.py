"""Build the shop's three images: ``python3 examples/shop/build.py`` (after ``kubelab image build``).

Each service directory (``product/``, ``order/``, ``payment/``: a ``main.py``, stdlib only) becomes
``kubelab/shop-<service>:0.1`` FROM ``kubelab/python:3.11`` through
:func:`kubelab.images.build_app_image` -- no registry, no network. Rebuilding an unchanged service is
a Docker cache hit. :func:`build_shop_images` is what tests and labs call; the script wraps it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import docker  # noqa: E402

from kubelab.images import PYTHON, Progress, build_app_image, image_exists  # noqa: E402

__all__ = ["SERVICES", "SHOP_DIR", "VERSION", "build_shop_images", "image_tag"]

SHOP_DIR = Path(__file__).resolve().parent
SERVICES = ("product", "order", "payment")
VERSION = "0.1"


def image_tag(service: str) -> str:
    """``kubelab/shop-<service>:0.1``: the image the shop's Deployment of ``service`` runs."""
    return f"kubelab/shop-{service}:{VERSION}"


def build_shop_images(client: docker.DockerClient, services: Sequence[str] = SERVICES, *,
                      progress: Progress | None = None) -> dict[str, str]:
    """Build the images of ``services``; return tag -> image id.

    Raises :class:`kubelab.images.ImageBuildError` (e.g. when ``kubelab/python:3.11`` is missing:
    run ``kubelab image build python`` first).
    """
    return {image_tag(service): build_app_image(client, image_tag(service), SHOP_DIR / service, base=PYTHON,
                                                progress=progress)
            for service in services}


def main(argv: Sequence[str] | None = None) -> int:
    services = list(argv if argv is not None else sys.argv[1:]) or list(SERVICES)
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        print(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    client = docker.from_env(timeout=300)
    if not image_exists(client, PYTHON):
        print(f"{PYTHON} is missing: run `kubelab image build python` first", file=sys.stderr)
        return 1
    for tag, image_id in build_shop_images(client, services, progress=print).items():
        print(f"{tag}  {image_id[:19]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
