"""Sidecar overhead on this host (no Docker): ``python bench/mesh_local.py [--rate 1000] [--duration 30]``.

Topology, all on 127.0.0.1::

    hey ──▶ app                                                     (direct)
    hey ──▶ client sidecar :outbound ──mTLS──▶ server sidecar :inbound ──▶ app   (via both sidecars)

* the app: a tiny uvloop HTTP/1.1 server answering every request with 1 KiB (a subprocess);
* the sidecars: two ``python -m meshd.proxy`` processes configured by a fake meshd run by this
  script (tests.meshd.fakes: real CSRs and certificates, real Discovery stream). The client
  sidecar runs in "explicit destination" mode (``x-kubelab-original-dst`` names the Service's
  ClusterIP:port, as SO_ORIGINAL_DST would in a pod); the server sidecar is STRICT mTLS and its
  original destination is the app's port;
* the load: ``hey`` (Debian), HTTP/1.1 keep-alive, 16 connections, an open-ish loop at ``--rate``
  requests/s (``hey -q`` is per connection) for ``--duration`` seconds, after a warm-up.

Prints p50/p90/p99 direct and via the sidecars, the added latency, each sidecar's CPU (cores,
from /proc utime+stime over the run) and RSS (VmRSS after the run, VmHWM). Targets (issue):
added p90 ≤ 1 ms, p99 ≤ 2 ms, ≤ 0.5 core per 1,000 req/s per sidecar, RSS ≤ 40 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from meshd.api.resources import CLUSTERS, INBOUND, LISTENERS, ROUTES, Inbound, InboundPort  # noqa: E402
from tests.meshd.fakes import FakeMeshd, MeshCA  # noqa: E402
from tests.meshd.proxy.harness import Mesh  # noqa: E402

APP = r"""
import asyncio, sys, uvloop
BODY = b"x" * 1024
RESP = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1024\r\n\r\n" + BODY
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.t.write(RESP * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
uvloop.run(main())
"""

CLUSTER_IP = "127.96.0.10"
SERVICE_PORT = 80


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon (private heap), RssFile (mapped libraries, shared with other processes) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            values[key] = int(rest.split()[0]) / (1 if key == "Threads" else 1024)
    return values


async def hey(url: str, *, rate: int, duration: float, connections: int, headers: list[str]) -> dict[str, float]:
    args = ["hey", "-z", f"{duration}s", "-c", str(connections), "-q", str(max(1, rate // connections))]
    for header in headers:
        name, _, value = header.partition(": ")
        args += ["-host", value] if name.lower() == "host" else ["-H", header]  # Go ignores a Host header
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    result: dict[str, float] = {}
    for pct, secs in re.findall(r"(\d+)%+ in ([\d.]+) secs", out):
        result[f"p{pct}"] = float(secs) * 1000
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(rps.group(1)) if rps else 0.0
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    result["non200"] = float(sum(int(n) for code, n in codes if code != "200"))
    result["errors"] = float(len(re.findall(r"^\s+\[\d+\]\s+Get ", out, re.M)))
    if os.environ.get("MESH_LOCAL_DEBUG"):
        print(out)
    if "p50" not in result:
        raise RuntimeError(f"hey failed (exit {proc.returncode}):\n{out}")
    return result


async def start_proxy(name: str, meshd: FakeMeshd, tmp: Path, root: Path, extra: list[str]) -> tuple[
        asyncio.subprocess.Process, dict[str, int]]:
    token = tmp / f"{name}-token"
    token.write_text(f"default/{name}")
    ports = {p: free_port() for p in ("outbound", "inbound", "admin", "status", "ready")}
    env = {**os.environ, "POD_NAME": f"{name}-0", "POD_NAMESPACE": "default", "SERVICE_ACCOUNT": name,
           "ISTIO_META_WORKLOAD_NAME": name, "ISTIO_METAJSON_LABELS": f'{{"app": "{name}"}}',
           "CA_ADDR": meshd.address, "PYTHONPATH": str(_ROOT), "PROXY_LOG_LEVEL": "warning"}
    profile = ["-m", "cProfile", "-o", os.environ["MESH_LOCAL_PROFILE"] + f"/{name}.prof"] if os.environ.get(
        "MESH_LOCAL_PROFILE") else []
    args = [sys.executable, *profile, "-m", "meshd.proxy", "--token-path", str(token), "--root-cert-path", str(root),
            "--bind-address", "127.0.0.1", "--no-access-log", *extra,
            *(a for k, v in ports.items() for a in (f"--{k}-port", str(v)))]
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.DEVNULL)
    return proc, ports


async def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            if status.startswith(b"HTTP/1.1 200 "):
                return
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("sidecar never became ready")


async def main(args: argparse.Namespace) -> None:
    if not shutil.which("hey"):
        raise SystemExit("hey is missing: apt-get install hey (scripts/setup installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="mesh-local-"))
    ca = MeshCA()
    root = tmp / "root-cert.pem"
    root.write_text(ca.root_pem)
    meshd = FakeMeshd(ca)
    await meshd.start()
    app_port = free_port()
    app = await asyncio.create_subprocess_exec(sys.executable, "-c", APP, str(app_port), stdout=asyncio.subprocess.PIPE)
    assert app.stdout is not None
    await app.stdout.readline()
    server, server_ports = await start_proxy("web", meshd, tmp, root, ["--original-dst", f"127.0.0.1:{app_port}"])
    client, client_ports = await start_proxy("load", meshd, tmp, root, ["--explicit-destination-header"])
    procs = [app, server, client]
    try:
        endpoint = Mesh.endpoint(None, server_ports["inbound"], name="web", meshed=True)
        clusters, rc, listener = Mesh.http_service("web", CLUSTER_IP, SERVICE_PORT, {"": [endpoint]})
        meshd.push(CLUSTERS, clusters)
        meshd.push(ROUTES, [rc])
        meshd.push(LISTENERS, [listener])
        meshd.push(INBOUND, [Inbound(default_mtls_mode="STRICT", ports=(InboundPort(app_port, "http", "STRICT"),))])
        await wait_ready(server_ports["ready"])
        await wait_ready(client_ports["ready"])
        load = dict(rate=args.rate, duration=args.duration, connections=args.connections)
        mesh_headers = ["Host: web", f"x-kubelab-original-dst: {CLUSTER_IP}:{SERVICE_PORT}"]
        mesh_url = f"http://127.0.0.1:{client_ports['outbound']}/"
        print(f"warm-up {args.warmup:.0f}s ...", flush=True)
        await hey(mesh_url, rate=args.rate, duration=args.warmup, connections=args.connections, headers=mesh_headers)
        print(f"direct: {args.rate} req/s, {args.connections} connections, {args.duration:.0f}s ...", flush=True)
        direct = await hey(f"http://127.0.0.1:{app_port}/", headers=[], **load)
        cpu0 = {p.pid: proc_cpu_seconds(p.pid) for p in (server, client)}
        t0 = time.monotonic()
        print("via both sidecars (mTLS) ...", flush=True)
        via = await hey(mesh_url, headers=mesh_headers, **load)
        elapsed = time.monotonic() - t0
        cpu = {p.pid: (proc_cpu_seconds(p.pid) - cpu0[p.pid]) / elapsed for p in (server, client)}
        print()
        print("load average during the run (this host is shared: latency includes waiting for a CPU): "
              + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs")
        print(f"{'':24}{'p50':>9}{'p90':>9}{'p99':>9}{'req/s':>9}{'non-200':>9}")
        for label, r in (("direct", direct), ("via sidecars", via)):
            print(f"{label:24}{r['p50']:9.2f}{r['p90']:9.2f}{r['p99']:9.2f}{r['rps']:9.0f}{r['non200']:9.0f}")
        print(f"{'added (ms)':24}{via['p50'] - direct['p50']:9.2f}{via['p90'] - direct['p90']:9.2f}"
              f"{via['p99'] - direct['p99']:9.2f}")
        per_k = 1000 / max(via["rps"], 1)
        for label, proc in (("client sidecar", client), ("server sidecar", server)):
            mem = proc_memory(proc.pid)
            print(f"{label:24}CPU {cpu[proc.pid]:.2f} core ({cpu[proc.pid] * per_k:.2f} per 1,000 req/s), "
                  f"RSS {mem['VmRSS']:.1f} MB (peak {mem['VmHWM']:.1f}; anon {mem['RssAnon']:.1f}, "
                  f"files {mem['RssFile']:.1f}), {mem['Threads']:.0f} threads")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
        await meshd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    import uvloop

    uvloop.run(main(parser.parse_args()))
