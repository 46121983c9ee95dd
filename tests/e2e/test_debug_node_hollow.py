"""``kubectl debug node/NAME`` on a hollow node: a clear answer, never a hang.

Hollow pods run no processes, so there is no host to look at: kubectl's attach is refused with
that reason, kubectl falls back to the pod's (simulated) log, which says so too, and returns. The
debug pod itself is bound to the node and, being a host-network pod, reports the node's IP.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab.images import BUSYBOX
from kubelab.testing import kubectl

pytestmark = [pytest.mark.kubectl, pytest.mark.slow]

CREATED = re.compile(r"Creating debugging pod (node-debugger-[\w-]+) with container \w+ on node ([\w-]+)")


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state_dir = tmp_path_factory.mktemp("hollow-debug-node")
    up = subprocess.run([sys.executable, "-m", "kubelab", "up", "--port", "0", "--hollow-nodes", "1", "--no-mesh",
                         "--state-dir", str(state_dir)], capture_output=True, text=True, timeout=300, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state_dir / "kubeconfig"
    finally:
        subprocess.run([sys.executable, "-m", "kubelab", "down", "--state-dir", str(state_dir)],
                       capture_output=True, timeout=120, check=False)


def test_interactive_node_debug_on_a_hollow_node_says_why_and_returns(kubeconfig: Path) -> None:
    node = json.loads(kubectl("get", "nodes", "-o", "json", kubeconfig=kubeconfig).stdout)["items"][0]
    name = node["metadata"]["name"]
    # A hang would end in the subprocess timeout (an error), not in a return.
    result = kubectl("debug", f"node/{name}", "-i", f"--image={BUSYBOX}", "--", "cat", "/host/etc/hostname",
                     kubeconfig=kubeconfig, input="", check=False, timeout=90)
    output = result.stdout + result.stderr
    assert f"pods of hollow node {name} run no processes" in result.stderr, output
    assert "simulated: no process runs" in result.stdout, output
    match = CREATED.search(output)
    assert match is not None and match.group(2) == name, output
    pod = json.loads(kubectl("get", "pod", match.group(1), "-o", "json", kubeconfig=kubeconfig).stdout)
    [internal] = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert pod["spec"]["hostNetwork"] and pod["status"]["podIP"] == internal
