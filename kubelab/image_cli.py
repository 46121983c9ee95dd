"""``kubelab image build|load|ls``: the registry-free images of :mod:`kubelab.images` from the CLI.

``kubelab.cli`` adds these subcommands with :func:`add_image_commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubelab.output import print_table


def add_image_commands(commands: Any) -> None:
    image = commands.add_parser("image", help="build, load and list the kubelab/* container images (no registry)")
    verbs = image.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    build = verbs.add_parser("build", help="build images locally (default: all); existing tags are kept")
    build.add_argument("names", nargs="*", metavar="NAME", help="busybox, python, nginx, proxyv2 (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    build.set_defaults(handler=cmd_image_build)
    load = verbs.add_parser("load", help="load images from a `docker save` tar")
    load.add_argument("file", type=Path, metavar="FILE")
    load.set_defaults(handler=cmd_image_load)
    ls = verbs.add_parser("ls", help="list the kubelab/* images")
    ls.set_defaults(handler=cmd_image_ls)


def _docker_client() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"cannot reach the Docker engine: {exc}", file=sys.stderr)
        return None
    return client


def _run_image_command(action: Any) -> int:
    from kubelab.images import ImageBuildError

    client = _docker_client()
    if client is None:
        return 1
    try:
        code: int = action(client)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return code


def cmd_image_build(args: argparse.Namespace) -> int:
    from kubelab import images

    def build(client: Any) -> int:
        images.ensure_images(client, args.names or list(images.IMAGES), force=args.force,
                             progress=lambda line: print(line, flush=True))
        return 0

    return _run_image_command(build)


def cmd_image_load(args: argparse.Namespace) -> int:
    from kubelab import images

    def load(client: Any) -> int:
        for tag in images.load(client, args.file):
            print(f"Loaded image: {tag}")
        return 0

    return _run_image_command(load)


def cmd_image_ls(args: argparse.Namespace) -> int:
    from kubelab import images

    def ls(client: Any) -> int:
        rows = [("REPOSITORY", "TAG", "IMAGE ID", "SIZE")]
        for info in images.list_images(client):
            repository, _, tag = info.tag.rpartition(":")
            rows.append((repository, tag, info.id[:12], f"{info.size / 1e6:.1f}MB"))
        print_table(rows)
        return 0

    return _run_image_command(ls)
