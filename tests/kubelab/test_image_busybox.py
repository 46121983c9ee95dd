"""``kubelab/busybox:1.35`` (:mod:`kubelab.image_busybox`): the rootfs offline, then the commands tutorials
run, in a real container, started each way a tutorial starts them: exec form (``command: [wget, ...]``,
``kubectl exec pod -- wget ...``), through ``sh -c``, and typed into an interactive ``sh``.

The container has no network but its loopback (``network_mode: none``): its own busybox ``httpd`` on
127.0.0.1:8080 answers, port 9 is closed, and 127.0.0.1:8081 accepts but never answers. The same commands
against other pods, an address of the pod network nothing owns, and the cluster DNS are in
``tests/e2e/test_busybox_cluster_docker.py``.
"""

from __future__ import annotations

import io
import shlex
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab import image_busybox, images
from tests.docker_daemon import TEST_LABEL, docker_client  # noqa: F401  # fixture

HOSTNAME = "tutorial-pod"
SERVER = ("mkdir -p /tmp/www; echo hello > /tmp/www/index.html; "
          "nc -ll -p 8081 -e sleep 3600 & "  # accepts every connection, never answers
          "exec httpd -f -p 127.0.0.1:8080 -h /tmp/www")
"""The test container's command (the directory is made before, not beside, the background ``nc``)."""


def _members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return {member.name: member for member in archive.getmembers()}


# --- without Docker -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in ("wget", "nc", "printenv", "nslookup")])
def test_scripts_stand_in_for_the_applets(name: str) -> None:
    member = _members(images.busybox_rootfs_tar())[f"bin/{name}"]
    assert member.type == tarfile.REGTYPE
    assert member.mode & 0o111


def test_rootfs_carries_the_libraries_the_binary_loads() -> None:
    members = _members(images.busybox_rootfs_tar())
    libraries = image_busybox.shared_libraries(image_busybox.BUSYBOX_BINARY)
    assert any(path.name.startswith("libc.so") for path in libraries)
    assert any(path.name.startswith("ld-linux") for path in libraries)
    for path in libraries:
        member = members[str(path).lstrip("/")]
        assert member.type == tarfile.REGTYPE, path  # the file, not the host's symlink
        assert member.size == path.resolve().stat().st_size


def test_a_static_or_missing_busybox_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\necho not busybox\n")
    script.chmod(0o755)
    with pytest.raises(image_busybox.BusyboxError, match="not a dynamically linked busybox"):
        image_busybox.busybox_rootfs_tar(script)
    with pytest.raises(image_busybox.BusyboxError, match="is missing"):
        image_busybox.busybox_rootfs_tar(tmp_path / "absent")


# --- in a container --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def container(docker_client: docker.DockerClient) -> Iterator[Any]:  # noqa: F811
    images.ensure_images(docker_client, ["busybox"])
    box = docker_client.containers.run(images.BUSYBOX, ["sh", "-c", SERVER], detach=True, network_mode="none",
                                       hostname=HOSTNAME, labels={TEST_LABEL: f"busybox-{uuid.uuid4().hex[:8]}"})
    try:
        deadline = time.monotonic() + 60
        while box.exec_run(["nc", "-z", "127.0.0.1", "8080"]).exit_code != 0:
            assert time.monotonic() < deadline, box.logs().decode(errors="replace")
            time.sleep(0.2)
        yield box
    finally:
        box.remove(force=True)


def _exec_form(argv: list[str]) -> list[str]:
    return argv


def _sh_c(argv: list[str]) -> list[str]:
    return ["sh", "-c", shlex.join(argv)]


def _typed(argv: list[str]) -> list[str]:
    # An interactive shell (-i) reading the line from its stdin, as in ``kubectl run -it -- sh``.
    return ["sh", "-c", f"echo {shlex.quote(shlex.join(argv) + '; exit $?')} | PS1= sh -i 2>&1"]


FORMS = [pytest.param(_exec_form, id="exec"), pytest.param(_sh_c, id="sh-c"), pytest.param(_typed, id="typed")]

COMMANDS = [
    pytest.param(["printenv", "HOSTNAME"], 0, HOSTNAME, id="printenv"),
    pytest.param(["printenv", "NO_SUCH_VARIABLE"], 1, "", id="printenv-unset"),
    pytest.param(["nc", "-z", "127.0.0.1", "8080"], 0, "", id="nc-z-open"),
    pytest.param(["nc", "-z", "127.0.0.1", "9"], 1, "", id="nc-z-closed"),
    pytest.param(["nc", "-zv", "-w", "2", "127.0.0.1", "8080"], 0, "127.0.0.1 (127.0.0.1:8080) open", id="nc-zv"),
    pytest.param(["wget", "-T", "2", "-qO-", "http://127.0.0.1:8080/"], 0, "hello", id="wget-T"),
    pytest.param(["wget", "-qO-", "-T2", "http://127.0.0.1:8080/"], 0, "hello", id="wget-T-joined"),
    pytest.param(["wget", "-T", "2", "-qO-", "http://127.0.0.1:9/"], 1,
                 "wget: can't connect to remote host (127.0.0.1): Connection refused", id="wget-T-refused"),
    pytest.param(["wget", "-T", "2", "-qO-", "http://127.0.0.1:8080/missing"], 1,
                 "wget: server returned error: HTTP/1.1 404 Not Found", id="wget-T-404"),
    pytest.param(["wget", "-T", "1", "-qO-", "http://127.0.0.1:8081/"], 1, "wget: download timed out",
                 id="wget-T-no-answer"),
    pytest.param(["wget", "--spider", "--timeout=1", "http://127.0.0.1:8080/"], 0, "remote file exists",
                 id="wget-spider-timeout"),
    pytest.param(["wget", "-q", "-O-", "http://127.0.0.1:8080/"], 0, "hello", id="wget-no-timeout"),
]


@pytest.mark.docker
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("argv", "code", "line"), COMMANDS)
def test_tutorial_command(container: Any, form: Any, argv: list[str], code: int, line: str) -> None:
    started = time.monotonic()
    result = container.exec_run(form(argv))
    out = result.output.decode(errors="replace")
    assert result.exit_code == code, out  # never 139: no applet crashes
    if line:
        assert line in out.splitlines(), out
    assert time.monotonic() - started < 30, out  # a timeout bounds the request


@pytest.mark.docker
def test_a_load_loop_runs_wget_through_the_shell(container: Any) -> None:
    # The HPA walkthrough's load generator, bounded: each pass a fresh wget found on PATH.
    loop = ("i=0; while sleep 0.01; do wget -q -O- http://127.0.0.1:8080/ >/dev/null || exit 1; "
            "i=$((i+1)); [ $i -ge 50 ] && break; done; echo requests=$i; command -v wget")
    result = container.exec_run(["sh", "-c", loop])
    assert (result.exit_code, result.output.decode().split()) == (0, ["requests=50", "/bin/wget"])
