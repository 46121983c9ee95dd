"""NetworkPolicy cost on real Docker: ``python bench/netpol.py [--policies 100] [--connects 300]``.

Brings up a one-node cluster (``kubelab up --nodes 1`` in a temporary state dir: its own cluster name,
pod network and iptables chains), starts a busybox ``httpd`` pod and a ``kubelab/python`` client pod, and
measures TCP connection setup (connect + close, from inside the client pod to the server's pod IP,
``--connects`` times, interleaved warm-up) first without any policy, then with ``--policies``
NetworkPolicies selecting the server (each allows the client on its own port; one of them on the
server's port, so the connections stay allowed and walk the whole per-pod chain). Waits until the
policies are enforced (a third pod is refused) before measuring. Prints p50/p99 of both runs and the
difference, then ``kubelab down`` removes everything it made.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

from kubelab.images import BUSYBOX, PYTHON, ensure_images  # noqa: E402
from kubelab.laptop import docker_client  # noqa: E402
from kubelab.testing import kubectl  # noqa: E402

SERVER_SCRIPT = ("import socket\n"
                 "s = socket.socket()\n"
                 "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                 "s.bind((\"\", 8080))\n"
                 "s.listen(4096)\n"
                 "while True:\n"
                 "    s.accept()[0].close()\n")
"""Accepts and closes at once (a forking server's accept backlog would add SYN retries to the tail)."""

CLIENT_SCRIPT = """
import json, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
samples = []
for i in range(n + 20):
    start = time.perf_counter()
    s = socket.create_connection((ip, port), timeout=5)
    took = time.perf_counter() - start
    s.close()
    if i >= 20:
        samples.append(took * 1000)
samples.sort()
print(json.dumps({"p50": samples[len(samples) // 2], "p90": samples[int(len(samples) * 0.9)],
                  "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
                  "mean": sum(samples) / len(samples)}))
"""


def _pod(name: str, image: str, labels: dict[str, str], command: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                       "spec": {"terminationGracePeriodSeconds": 0,
                                "containers": [{"name": "c", "image": image, "command": ["sh", "-c", command]}]}})


def _policy(i: int, port: int) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": f"p{i}"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                  "ports": [{"port": port}]}]}}


class Bench:
    """One temporary cluster and kubectl against it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def kubelab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelab", *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=600, check=False)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return kubectl(*args, kubeconfig=self.state_dir / "kubeconfig", input=input, check=check,
                       timeout=300).stdout

    def pod_ip(self, name: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        pod: dict[str, Any] = {}
        while time.monotonic() < deadline:
            pod = json.loads(self.kubectl("get", "pod", name, "-o", "json"))
            if pod["status"].get("phase") == "Running" and pod["status"].get("podIP"):
                return str(pod["status"]["podIP"])
            time.sleep(0.5)
        raise RuntimeError(f"pod {name} never ran: {json.dumps(pod.get('status'))}")

    def connects(self, client: str, ip: str) -> bool:
        """One connection attempt from ``client`` (the python client has no nc, the busybox pods do)."""
        probe = ["python3", "-c", f"import socket; socket.create_connection(('{ip}', 8080), 3).close()"] \
            if client == "client" else ["sh", "-c", f"echo | nc -w 3 {ip} 8080"]
        out = kubectl("exec", client, "--", *probe, kubeconfig=self.state_dir / "kubeconfig", check=False,
                      timeout=60)
        return out.returncode == 0

    def measure(self, ip: str, connects: int) -> dict[str, float]:
        out = self.kubectl("exec", "client", "--", "python3", "-c", CLIENT_SCRIPT, ip, "8080", str(connects))
        return {k: float(v) for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def run(policies: int, connects: int) -> int:
    client = docker_client()
    try:
        ensure_images(client, ["busybox", "python"])
    finally:
        client.close()
    with tempfile.TemporaryDirectory(prefix="kubelab-netpol-") as tmp:
        bench = Bench(Path(tmp) / "state")
        up = bench.kubelab("up", "--port", "0", "--nodes", "1", "--no-mesh")
        if up.returncode != 0:
            up = bench.kubelab("up", "--port", "0", "--nodes", "1")
        try:
            if up.returncode != 0:
                print(f"kubelab up failed:\n{up.stdout}\n{up.stderr}", file=sys.stderr)
                return 1
            bench.kubectl("apply", "-f", "-", input=_pod("web", PYTHON, {"app": "web"},
                                                        f"exec python3 -c '{SERVER_SCRIPT}'"))
            bench.kubectl("apply", "-f", "-", input=_pod("client", PYTHON, {"role": "client"}, "sleep 3600"))
            bench.kubectl("apply", "-f", "-", input=_pod("other", BUSYBOX, {"role": "other"}, "sleep 3600"))
            ip = bench.pod_ip("web")
            bench.pod_ip("client")
            bench.pod_ip("other")
            deadline = time.monotonic() + 180
            while not bench.connects("client", ip):
                if time.monotonic() > deadline:
                    raise RuntimeError("the client never reached the server")
                time.sleep(0.5)
            without = bench.measure(ip, connects)
            items = [_policy(i, 10000 + i) for i in range(policies - 1)] + [_policy(policies - 1, 8080)]
            bench.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
            deadline = time.monotonic() + 180
            while bench.connects("other", ip):
                if time.monotonic() > deadline:
                    raise RuntimeError("policies were never enforced")
                time.sleep(0.5)
            with_policies = bench.measure(ip, connects)
        finally:
            bench.kubelab("down")
    print(f"connection setup, pod -> pod, {connects} connects each (ms)")
    keys = ("p50", "p90", "p99", "mean")
    print(f"{'':16}" + "".join(f"{k:>10}" for k in keys))
    print(f"{'no policy':16}" + "".join(f"{without[k]:10.3f}" for k in keys))
    print(f"{f'{policies} policies':16}" + "".join(f"{with_policies[k]:10.3f}" for k in keys))
    print(f"{'added':16}" + "".join(f"{with_policies[k] - without[k]:+10.3f}" for k in keys))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--connects", type=int, default=300)
    args = parser.parse_args(argv)
    return run(args.policies, args.connects)


if __name__ == "__main__":
    sys.exit(main())
