"""Tests of :mod:`kubelab.images` and ``kubelab image``: rootfs contents offline, then real builds on Docker.

The python and nginx images are built at most once per session (fixture ``debian_images``, about 20 s each
the first time); busybox is rebuilt freely (well under a second). Every container and network a test
creates carries ``kubelab.dev/test`` and is removed by the test; only the test's own containers are
contacted.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from kubelab import image_debian, images
from kubelab.cli import main
from tests import docker_daemon
from tests.docker_daemon import TEST_LABEL, docker_client  # noqa: F401  # fixture


def _members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return {member.name: member for member in archive.getmembers()}


def _read(tar: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        stream = archive.extractfile(name)
        assert stream is not None
        return stream.read().decode()


# --- without Docker -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "target"),
    [
        pytest.param("bin/sh", tarfile.SYMTYPE, "busybox", id="sh-applet"),
        pytest.param("bin/wget", tarfile.REGTYPE, "", id="wget-wrapper"),
        pytest.param("bin/httpd", tarfile.SYMTYPE, "busybox", id="httpd-applet"),
        pytest.param("bin/nc", tarfile.REGTYPE, "", id="nc-wrapper"),
        pytest.param("usr/bin/env", tarfile.SYMTYPE, "/bin/busybox", id="usr-bin-env"),
        pytest.param("bin/busybox", tarfile.REGTYPE, "", id="binary"),
        pytest.param("tmp", tarfile.DIRTYPE, "", id="tmp"),
    ],
)
def test_busybox_rootfs_entries(name: str, kind: bytes, target: str) -> None:
    members = _members(images.busybox_rootfs_tar())
    assert members[name].type == kind
    assert members[name].linkname == target


def test_busybox_rootfs_users_and_tmp_mode() -> None:
    tar = images.busybox_rootfs_tar()
    assert _members(tar)["tmp"].mode == 0o1777
    passwd = _read(tar, "etc/passwd").splitlines()
    assert passwd[0].startswith("root:x:0:0:")
    assert "proxy:x:1337:1337:" in passwd[1]


def test_mmdebstrap_command_reads_host_sources_and_scrubs_them(tmp_path: Path) -> None:
    command = image_debian.mmdebstrap_command(["python3", "iptables"], tmp_path / "rootfs.tar")
    assert command[-3:] == ["bookworm", str(tmp_path / "rootfs.tar"), "/etc/apt/sources.list.d/debian.sources"]
    assert "--include=python3,iptables" in command
    assert "--variant=essential" in command
    assert any(arg.endswith("hooks/merged-usr") for arg in command)
    assert any(arg.endswith("hooks/eatmydata") for arg in command)
    assert any("/etc/apt/sources.list.d/*" in arg for arg in command if arg.startswith("--customize-hook"))
    assert not any("://" in arg for arg in command)  # no mirror URL: the sources file names it


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        pytest.param("busybox", "kubelab/busybox:1.35", id="short-busybox"),
        pytest.param("python", "kubelab/python:3.11", id="short-python"),
        pytest.param("kubelab/nginx:1.22", "kubelab/nginx:1.22", id="full-tag"),
    ],
)
def test_resolve_names(name: str, tag: str) -> None:
    assert images._resolve(name) == tag


@pytest.mark.parametrize("name", [pytest.param("alpine", id="unknown"), pytest.param("kubelab/busybox", id="no-tag")])
def test_resolve_rejects_unknown_names(name: str) -> None:
    with pytest.raises(images.ImageBuildError, match="unknown image"):
        images._resolve(name)


def test_no_tag_is_latest() -> None:
    assert all(not tag.endswith(":latest") and ":" in tag for tag in images.IMAGES.values())


def test_ensure_docker_without_dockerd_fails_with_setup_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(docker_daemon, "_ping", lambda timeout=2.0: None)
    monkeypatch.setattr("tests.docker_daemon.shutil.which", lambda name: None)
    monkeypatch.setattr(docker_daemon, "DOCKERD", tmp_path / "no-dockerd")
    with pytest.raises(pytest.fail.Exception, match=r"docker\.io is not installed: run scripts/setup"):
        docker_daemon.ensure_docker(timeout=1)



def test_a_socket_left_by_a_gone_daemon_does_not_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After a reboot /var/run/docker.sock still exists but refuses connections: that means "start one"."""
    stale = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # the file stays, nobody listens: connect() is refused
    monkeypatch.setattr(docker_daemon, "DOCKER_SOCKET", stale)
    assert docker_daemon._ping(timeout=1) is None


@pytest.mark.parametrize(("comm", "kept"), [(None, False), ("dockerd", True), ("sleep", False)])
def test_a_stale_docker_pidfile_is_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           comm: str | None, kept: bool) -> None:
    """dockerd refuses to start while its pid file names a live process; only a live dockerd keeps it."""
    pidfile = tmp_path / "docker.pid"
    pid = os.getpid() if comm else 2**22 + 1  # above pid_max: no such process
    pidfile.write_text(f"{pid}\n")
    monkeypatch.setattr(docker_daemon, "DOCKER_PIDFILE", pidfile)
    real_read_text = Path.read_text

    def fake_read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if comm is not None and self == Path(f"/proc/{pid}/comm"):
            return f"{comm}\n"
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", fake_read_text)
    docker_daemon._remove_stale_pidfile()
    assert pidfile.exists() is kept


# --- with Docker ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def debian_images(docker_client: docker.DockerClient) -> dict[str, images.BuildResult]:  # noqa: F811
    """python and nginx, built once per session (kept afterwards: other suites reuse them)."""
    results = images.ensure_images(docker_client, ["python", "nginx"])
    return {result.tag: result for result in results}


@pytest.fixture
def labels() -> dict[str, str]:
    return {TEST_LABEL: f"images-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
def cleanup(docker_client: docker.DockerClient, labels: dict[str, str]) -> Iterator[None]:  # noqa: F811
    """Remove every container, then every network, carrying this test's label."""
    yield
    selector = {"label": f"{TEST_LABEL}={labels[TEST_LABEL]}"}
    for container in docker_client.containers.list(all=True, filters=selector):
        container.remove(force=True)
    for network in docker_client.networks.list(filters=selector):
        network.remove()


def _run(client: docker.DockerClient, image: str, command: list[str], labels: dict[str, str], **kwargs: object) -> str:
    """Run to completion, return stdout+stderr; fail on a non-zero exit."""
    container = client.containers.run(image, command, detach=True, labels=labels, **kwargs)
    try:
        status = container.wait(timeout=60)
        output: bytes = container.logs()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, output.decode(errors="replace")
    return output.decode()


@pytest.mark.exclusive
@pytest.mark.docker
def test_busybox_builds_fast_and_runs(docker_client: docker.DockerClient, labels: dict[str, str],  # noqa: F811
                                      cleanup: None) -> None:
    result = images.build_image(docker_client, "busybox", force=True)
    assert result.built
    assert result.seconds < 2
    out = _run(docker_client, images.BUSYBOX, ["sh", "-c", "echo ok; id proxy"], labels)
    assert out.splitlines() == ["ok", "uid=1337(proxy) gid=1337(proxy) groups=1337(proxy)"]


@pytest.mark.docker
def test_image_from_an_older_recipe_is_rebuilt(docker_client: docker.DockerClient) -> None:  # noqa: F811
    images.ensure_images(docker_client, ["busybox"])
    stale = f"FROM {images.BUSYBOX}\nLABEL {images.RECIPE_LABEL}=0\n"
    docker_client.images.build(fileobj=io.BytesIO(stale.encode()), tag=images.BUSYBOX, rm=True, pull=False)
    lines: list[str] = []
    result = images.ensure_images(docker_client, ["busybox"], progress=lines.append)[0]
    assert result.built
    assert any("built by recipe 0" in line for line in lines), lines
    labels = docker_client.images.get(images.BUSYBOX).labels
    assert labels[images.RECIPE_LABEL] == str(images.RECIPES[images.BUSYBOX])
    assert not images.ensure_images(docker_client, ["busybox"])[0].built


@pytest.mark.exclusive
@pytest.mark.docker
def test_second_build_is_a_noop(docker_client: docker.DockerClient) -> None:  # noqa: F811
    first = images.ensure_images(docker_client, ["busybox"])[0]
    before = docker_client.images.get(images.BUSYBOX).id
    lines: list[str] = []
    second = images.ensure_images(docker_client, ["busybox"], progress=lines.append)[0]
    assert first.tag == second.tag == images.BUSYBOX
    assert not second.built
    assert second.seconds < 0.5
    assert docker_client.images.get(images.BUSYBOX).id == before
    assert lines == ["kubelab/busybox:1.35: present, skipped (use --force to rebuild)"]


@pytest.mark.docker
def test_debian_images_are_noops_once_built(docker_client: docker.DockerClient,  # noqa: F811
                                            debian_images: dict[str, images.BuildResult]) -> None:
    started = time.monotonic()
    again = images.ensure_images(docker_client, ["python", "nginx"])
    assert [result.built for result in again] == [False, False]
    assert time.monotonic() - started < 1


@pytest.mark.docker
def test_python_image_runs_python(docker_client: docker.DockerClient, labels: dict[str, str],  # noqa: F811
                                  debian_images: dict[str, images.BuildResult], cleanup: None) -> None:
    out = _run(docker_client, images.PYTHON, ["python3", "-c", "import json, sys; print(1, sys.version[:4])"], labels)
    assert out.strip() == "1 3.11"
    # The mesh's init container needs iptables; the host's mirror name must not ship in the image.
    out = _run(docker_client, images.PYTHON, ["sh", "-c", "iptables --version; ls /etc/apt/sources.list.d | wc -l"],
               labels)
    assert out.startswith("iptables v1.8")
    assert out.split()[-1] == "0"


@pytest.mark.docker
def test_nginx_serves_its_page(docker_client: docker.DockerClient, labels: dict[str, str],  # noqa: F811
                               debian_images: dict[str, images.BuildResult], cleanup: None) -> None:
    images.ensure_images(docker_client, ["busybox"])
    network = docker_client.networks.create(f"kubelab-test-{labels[TEST_LABEL]}", driver="bridge", labels=labels)
    server = docker_client.containers.run(images.NGINX, detach=True, network=network.name, labels=labels)
    server.reload()
    ip = server.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    # busybox wget segfaults on "connection refused", and this busybox's nc has no -z: probe with an empty nc.
    script = (f"for i in $(seq 100); do nc -w 1 {ip} 80 </dev/null 2>/dev/null && break; sleep 0.1; done; "
              f"wget -qO- http://{ip}/")
    page = _run(docker_client, images.BUSYBOX, ["sh", "-c", script], labels, network=network.name)
    assert "<h1>Welcome to nginx!</h1>" in page
    assert "kubelab/nginx:1.22" in page
    assert b'"GET / HTTP/1.1" 200' in server.logs()  # access log goes to stdout


@pytest.mark.docker
def test_build_app_image_runs_program(docker_client: docker.DockerClient, labels: dict[str, str],  # noqa: F811
                                      debian_images: dict[str, images.BuildResult], cleanup: None,
                                      tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "helper.py").write_text("GREETING = 'hello from app'\n")
    (source / "main.py").write_text("import json, six\nfrom helper import GREETING\n"
                                    "print(json.dumps({'msg': GREETING, 'six': six.__name__}))\n")
    tag = f"kubelab/test-app-{labels[TEST_LABEL]}:0.1"
    try:
        image_id = images.build_app_image(docker_client, tag, source, requirements=["six"])
        assert image_id.startswith("sha256:")
        out = _run(docker_client, tag, [], labels)
        assert json.loads(out) == {"msg": "hello from app", "six": "six"}
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.mark.docker
@pytest.mark.parametrize(
    ("tag", "source", "message"),
    [
        pytest.param("kubelab/app:latest", "src", "never", id="latest-tag"),
        pytest.param("kubelab/app", "src", "never", id="no-tag"),
        pytest.param("kubelab/app:1", "missing", "does not exist", id="missing-source"),
    ],
)
def test_build_app_image_rejects(docker_client: docker.DockerClient, tmp_path: Path,  # noqa: F811
                                 tag: str, source: str, message: str) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(images.ImageBuildError, match=message):
        images.build_app_image(docker_client, tag, tmp_path / source)


@pytest.mark.docker
def test_save_load_and_list(docker_client: docker.DockerClient, labels: dict[str, str],  # noqa: F811
                            tmp_path: Path) -> None:
    images.ensure_images(docker_client, ["busybox"])
    tag = f"kubelab/test-load-{labels[TEST_LABEL]}:1"
    docker_client.images.get(images.BUSYBOX).tag(tag)
    archive = tmp_path / "images.tar"
    try:
        images.save(docker_client, [tag, images.BUSYBOX], archive)
        docker_client.images.remove(tag)
        assert tag not in [info.tag for info in images.list_images(docker_client)]
        assert images.load(docker_client, archive) == sorted([tag, images.BUSYBOX])
        listed = {info.tag: info for info in images.list_images(docker_client)}
        assert listed[tag].size > 1_000_000
        assert listed[images.BUSYBOX].id == listed[tag].id
        assert all(name.startswith("kubelab/") for name in listed)
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.mark.docker
def test_load_missing_file(docker_client: docker.DockerClient, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(images.ImageBuildError, match="no such file"):
        images.load(docker_client, tmp_path / "absent.tar")


@pytest.mark.docker
@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        pytest.param(["image", "build", "busybox"], 0, "kubelab/busybox:1.35: present, skipped", id="build"),
        pytest.param(["image", "ls"], 0, "kubelab/busybox 1.35", id="ls"),
        pytest.param(["image", "build", "alpine"], 1, 'unknown image "alpine"', id="unknown"),
        pytest.param(["image", "load", "/nonexistent.tar"], 1, "no such file", id="load-missing"),
    ],
)
def test_cli(docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str],  # noqa: F811
             argv: list[str], code: int, expected: str) -> None:
    images.ensure_images(docker_client, ["busybox"])
    assert main(argv) == code
    captured = capsys.readouterr()
    # Column widths depend on the other images present: compare with runs of white space folded.
    assert " ".join(expected.split()) in " ".join((captured.out + captured.err).split())
