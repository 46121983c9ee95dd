"""The commands kubernetes.io tutorials run in busybox, python and nginx work in kubelab's images:
``printenv``, ``nc -z``, ``wget -T`` (busybox 1.35's own crashes in its error path), ``python``, and
nginx serving ``/usr/share/nginx/html`` like the upstream image. Each runs in a real container.

``nc -z`` and ``wget -T`` are scripts in front of the applets; busybox's ``sh`` runs applets directly,
so they are exercised the way a container command starts them: by path, without that shell."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest

from kubelab import images
from tests.docker_daemon import TEST_LABEL, docker_client  # noqa: F401  # fixture

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def built(docker_client: docker.DockerClient) -> None:  # noqa: F811
    images.ensure_images(docker_client, ["busybox", "python", "nginx"])


@pytest.fixture
def labels(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:  # noqa: F811
    value = {TEST_LABEL: f"tutorials-{uuid.uuid4().hex[:8]}"}
    yield value
    for container in docker_client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={value[TEST_LABEL]}"}):
        container.remove(force=True)


def run(client: docker.DockerClient, image: str, script: str, labels: dict[str, str],
        env: dict[str, str] | None = None, shell: str = "sh") -> tuple[int, str]:
    """Run ``<shell> -c script`` to completion: (exit code, stdout+stderr)."""
    container = client.containers.run(image, [shell, "-c", script], detach=True, labels=labels,
                                      environment=env or {})
    try:
        status = container.wait(timeout=120)
        return int(status["StatusCode"]), container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


# A tiny server inside the same container: busybox httpd on 127.0.0.1:8080 serving "hello".
SERVE = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www && "


@pytest.mark.parametrize(("script", "code", "expected"), [
    pytest.param("printenv GREETING", 0, "hi there", id="printenv"),
    pytest.param(SERVE + "/bin/nc -z 127.0.0.1 8080 && echo open", 0, "open", id="nc-z-open"),
    pytest.param("/bin/nc -z 127.0.0.1 9 || echo closed", 0, "closed", id="nc-z-closed"),
    pytest.param(SERVE + "/bin/wget -q -T 5 -O- http://127.0.0.1:8080/", 0, "hello", id="wget-T-ok"),
    pytest.param(SERVE + "/bin/wget -q -T5 -O- http://127.0.0.1:8080/", 0, "hello", id="wget-T-joined"),
    pytest.param("/bin/wget -q -T 2 -O- http://127.0.0.1:9/; echo rc=$?", 0, "rc=1", id="wget-T-refused-no-crash"),
    pytest.param(SERVE + "/bin/wget -q -T 2 -O- http://127.0.0.1:8080/missing; echo rc=$?", 0, "rc=1",
                 id="wget-T-404-no-crash"),
    pytest.param("nc -l -p 8081 >/dev/null & /bin/wget -q -T 1 -O- http://127.0.0.1:8081/; echo rc=$?", 0,
                 "rc=1", id="wget-T-times-out"),
])
def test_busybox_tutorial_commands(docker_client: docker.DockerClient, built: None,  # noqa: F811
                                   labels: dict[str, str], script: str, code: int, expected: str) -> None:
    status, out = run(docker_client, images.BUSYBOX, script, labels, env={"GREETING": "hi there"})
    assert status == code, out
    assert expected in out.splitlines(), out


def test_python_is_python3(docker_client: docker.DockerClient, built: None,  # noqa: F811
                           labels: dict[str, str]) -> None:
    status, out = run(docker_client, images.PYTHON, "python -c 'import sys; print(sys.version_info[0])'", labels)
    assert (status, out.strip()) == (0, "3")


def test_nginx_serves_usr_share_nginx_html(docker_client: docker.DockerClient, built: None,  # noqa: F811
                                           labels: dict[str, str]) -> None:
    script = ("echo custom > /usr/share/nginx/html/page.html && nginx && "
              "for i in $(seq 50); do exec 3<>/dev/tcp/127.0.0.1/80 && break; sleep 0.2; done; "
              "printf 'GET /page.html HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3; echo; "
              "test -L /var/www/html && echo linked")
    status, out = run(docker_client, images.NGINX, script, labels, shell="bash")
    assert status == 0, out
    assert "custom" in out.splitlines(), out
    assert "linked" in out.splitlines(), out
