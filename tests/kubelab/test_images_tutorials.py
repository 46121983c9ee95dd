"""The commands kubernetes.io tutorials run in the python and nginx images work: ``python``, and nginx
serving ``/usr/share/nginx/html`` like the upstream image. Each runs in a real container. (The busybox
image's commands are in ``test_image_busybox.py``.)"""

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
