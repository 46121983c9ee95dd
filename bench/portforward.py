"""Port-forward throughput on real Docker: ``python bench/portforward.py [--mb 100] [--rounds 3]``.

Other flags: ``--kubectl 1.33`` (the kubectl minor used), ``--quick``, ``--json FILE``.

Brings up ``kubelab up --nodes 1`` in a temporary state dir (its own cluster name, bridge and pod
subnet; apiserver on a free port), starts one busybox pod serving a ``--mb`` MiB file with
``httpd``, and downloads it, in the same run, round after round:

- **direct**: from the host to the pod's IP on the cluster's bridge (what a pod-to-pod transfer
  costs, the baseline);
- **port-forward**: through ``kubectl port-forward pod/… LOCAL:8080`` (kubectl → apiserver →
  kubelet → pod: SPDY, in a WebSocket for kubectl 1.31+, translated to the kubelet's WebSocket).

Prints MB/s per round and the median of each path, then their ratio (``--json FILE`` also writes
them, with the cluster's name); ``--quick`` is one round of 5 MiB. ``kubelab down`` and the state
dir's removal run on exit, whatever happened.
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
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

from kubelab import laptop  # noqa: E402
from kubelab.images import BUSYBOX  # noqa: E402
from kubelab.testing import kubectl, kubectl_binary  # noqa: E402

__all__ = ["main"]

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: bench-files}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && head -c SIZE /dev/zero > /www/big && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"""


def _kubelab(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelab", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=_ROOT)


def _download(url: str) -> tuple[int, float]:
    """(bytes, seconds) for one GET of ``url``."""
    started = time.perf_counter()
    size = 0
    with urllib.request.urlopen(url, timeout=120) as response:
        while chunk := response.read(1 << 20):
            size += len(chunk)
    return size, time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _measure(kubeconfig: Path, version: str | None, rounds: int, expected: int) -> dict[str, list[float]]:
    pod_ip = kubectl("get", "pod", "bench-files", "-o", "jsonpath={.status.podIP}", kubeconfig=kubeconfig).stdout
    local = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    forward = subprocess.Popen([str(kubectl_binary(version)), "port-forward", "--address=127.0.0.1",
                                f"--cache-dir={kubeconfig.parent / 'kc-bench'}", "pod/bench-files", f"{local}:8080"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results: dict[str, list[float]] = {"direct": [], "port-forward": []}
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        if not line.startswith("Forwarding from"):
            problem = forward.stderr.read() if forward.stderr else ""
            raise SystemExit(f"kubectl port-forward did not start: {line!r} {problem}")
        for index in range(rounds):
            for name, url in (("direct", f"http://{pod_ip}:8080/big"),
                              ("port-forward", f"http://127.0.0.1:{local}/big")):
                size, seconds = _download(url)
                if size != expected:
                    raise SystemExit(f"{name}: got {size} bytes, expected {expected}")
                rate = size / seconds / 1e6
                results[name].append(rate)
                print(f"round {index + 1} {name:>12}: {rate:8.1f} MB/s ({seconds:.2f} s)", flush=True)
    finally:
        forward.terminate()
        forward.wait(timeout=30)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the file downloaded (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kubectl", default=None, help="kubectl minor version (1.27 … 1.33); default /usr/bin/kubectl")
    parser.add_argument("--quick", action="store_true", help="one round of 5 MiB")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.rounds = 5, 1
    size = args.mb * 1024 * 1024
    state_dir = Path(tempfile.mkdtemp(prefix="kubelab-bench-pf-"))
    try:
        up = _kubelab(state_dir, "up", "--port", "0", "--nodes", "1")
        if up.returncode != 0:
            raise SystemExit(f"kubelab up failed:\n{up.stdout}\n{up.stderr}")
        kubeconfig = state_dir / "kubeconfig"
        manifest = POD.replace("IMAGE", BUSYBOX).replace("SIZE", str(size))
        kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=manifest)
        kubectl("wait", "--for=condition=Ready", "pod/bench-files", "--timeout=180s", kubeconfig=kubeconfig,
                timeout=200)
        results = _measure(kubeconfig, args.kubectl, args.rounds, size)
        direct, forwarded = (statistics.median(results[k]) for k in ("direct", "port-forward"))
        print(f"\n{args.mb} MiB download, median of {args.rounds} (kubectl {args.kubectl or 'default'}):")
        print(f"  direct to the pod IP:    {direct:8.1f} MB/s")
        print(f"  through port-forward:    {forwarded:8.1f} MB/s  ({forwarded / direct:.1%} of direct)")
        if args.json is not None:
            args.json.write_text(json.dumps({
                "cluster": laptop.cluster_name(state_dir), "mb": args.mb, "rounds": args.rounds,
                "direct_mb_s": direct, "portforward_mb_s": forwarded, "ratio": forwarded / direct}))
    finally:
        _kubelab(state_dir, "down")
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
