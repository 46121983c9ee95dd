"""Service-account token benchmark: ``python bench/tokens.py [--tokens N] [--seconds S] [--concurrency C]``.

Against one real apiserver process (SQLite, HTTPS on loopback), printed as measured:

1. **TokenReviews/s** — ``N`` tokens minted with TokenRequest (``serviceaccounts/bench/token``),
   then ``C`` clients POST TokenReviews (each for the next token, round robin) for ``S`` seconds
   over keep-alive HTTPS; reviews/s and the p50/p99 of one review. Every review must come back
   ``authenticated`` as ``system:serviceaccount:bench:bench``.
2. **Bearer-token authentication overhead** — one client GETs the same ConfigMap ``R`` times with
   a service-account token and ``R`` times with a lab user's client certificate (both bound to
   ``edit`` in the namespace, so both go through RBAC), interleaved; p50/p99 of each and the
   difference of the medians (the cost of verifying an ES256 JWT and its bound objects).

``--json PATH`` also writes the figures as JSON (the smoke test reads them); ``--quick`` is a
short run for CI.
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
import base64  # noqa: E402
import ssl  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402

from kubelab.testing import RunningApiServer, start_apiserver  # noqa: E402
from kubelab.users import add_user  # noqa: E402

NAMESPACE = "bench"
ACCOUNT = "bench"
RBAC = "rbac.authorization.k8s.io"
JSON = {"Content-Type": "application/json"}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _client_context(server: RunningApiServer, kubeconfig: Path, workdir: Path, name: str) -> ssl.SSLContext:
    """A TLS context trusting the cluster CA, with the kubeconfig's client certificate."""
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    context = ssl.create_default_context(cafile=str(server.state_dir / "pki" / "ca.crt"))
    context.load_cert_chain(str(cert), str(key))
    return context


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, data=orjson.dumps(body), headers=JSON) as resp:
        answer = orjson.loads(await resp.read())
        assert resp.status in (200, 201), answer
        return answer


async def _setup(session: aiohttp.ClientSession, base: str, tokens: int) -> list[str]:
    """The account, its ``edit`` RoleBinding, a ConfigMap to read, and ``tokens`` minted tokens."""
    ns = f"{base}/api/v1/namespaces/{NAMESPACE}"
    await _post(session, f"{ns}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}})
    await _post(session, f"{base}/apis/{RBAC}/v1/namespaces/{NAMESPACE}/rolebindings", {
        "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "bench-sa-edit"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]})
    await _post(session, f"{ns}/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}, "data": {"k": "v"}})
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    minted = await asyncio.gather(*(_post(session, f"{ns}/serviceaccounts/{ACCOUNT}/token", request)
                                    for _ in range(tokens)))
    return [str(answer["status"]["token"]) for answer in minted]


async def token_reviews(session: aiohttp.ClientSession, base: str, tokens: list[str], *, seconds: float,
                        concurrency: int) -> dict[str, float]:
    """``concurrency`` clients reviewing tokens round robin for ``seconds``: reviews/s, p50, p99 (ms)."""
    url = f"{base}/apis/authentication.k8s.io/v1/tokenreviews"
    samples: list[float] = []
    expected = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        n = offset
        while time.perf_counter() < deadline:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": tokens[n % len(tokens)]}}
            n += concurrency
            start = time.perf_counter()
            review = await _post(session, url, body)
            samples.append((time.perf_counter() - start) * 1000)
            status = review["status"]
            assert status.get("authenticated") and status["user"]["username"] == expected, status

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"reviews_per_s": len(samples) / elapsed, "review_p50_ms": statistics.median(samples),
            "review_p99_ms": _percentile(samples, 0.99), "reviews": float(len(samples))}


async def _until_allowed(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    """Wait until a new binding has reached the authorizer (it follows the watch cache)."""
    deadline = time.monotonic() + 60
    while True:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            if resp.status == 200:
                return
            assert resp.status == 403 and time.monotonic() < deadline, resp.status
        await asyncio.sleep(0.05)


async def _timed_get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return (time.perf_counter() - start) * 1000


async def authn_overhead(server: RunningApiServer, token: str, user_context: ssl.SSLContext,
                         requests: int) -> dict[str, float]:
    """p50/p99 (ms) of one GET with a bearer token and with a client certificate, interleaved."""
    url = f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps/probe"
    bearer_context = ssl.create_default_context(cafile=str(server.state_dir / "pki" / "ca.crt"))
    bearer: list[float] = []
    cert: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=bearer_context, limit=1)) as by_token, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=user_context, limit=1)) as by_cert:
        auth = {"Authorization": f"Bearer {token}"}
        await _until_allowed(by_token, url, auth)
        await _until_allowed(by_cert, url, {})
        for _ in range(min(100, requests)):  # warm both connections and the caches
            await _timed_get(by_token, url, auth)
            await _timed_get(by_cert, url, {})
        for _ in range(requests):
            bearer.append(await _timed_get(by_token, url, auth))
            cert.append(await _timed_get(by_cert, url, {}))
    out = {"bearer_get_p50_ms": statistics.median(bearer), "bearer_get_p99_ms": _percentile(bearer, 0.99),
           "cert_get_p50_ms": statistics.median(cert), "cert_get_p99_ms": _percentile(cert, 0.99)}
    out["bearer_overhead_p50_ms"] = out["bearer_get_p50_ms"] - out["cert_get_p50_ms"]
    return out


async def _run(server: RunningApiServer, workdir: Path, user_kubeconfig: Path,
               args: argparse.Namespace) -> dict[str, float]:
    admin = _client_context(server, server.state_dir / "kubeconfig", workdir, "admin")
    user = _client_context(server, user_kubeconfig, workdir, "user")
    connector = aiohttp.TCPConnector(ssl=admin, limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        tokens = await _setup(session, server.url, args.tokens)
        minted = time.perf_counter() - started
        print(f"minted {len(tokens)} tokens with TokenRequest in {minted:.2f}s "
              f"({len(tokens) / minted:.0f} TokenRequests/s)", flush=True)
        figures = await token_reviews(session, server.url, tokens, seconds=args.seconds,
                                      concurrency=args.concurrency)
    figures["token_requests_per_s"] = len(tokens) / minted
    print(f"TokenReviews: {figures['reviews_per_s']:.0f}/s with {args.concurrency} clients over "
          f"{args.seconds:g}s ({figures['reviews']:.0f} reviews), p50 {figures['review_p50_ms']:.2f} ms, "
          f"p99 {figures['review_p99_ms']:.2f} ms", flush=True)
    figures.update(await authn_overhead(server, tokens[0], user, args.requests))
    print(f"GET with a bearer token: p50 {figures['bearer_get_p50_ms']:.2f} ms, "
          f"p99 {figures['bearer_get_p99_ms']:.2f} ms", flush=True)
    print(f"GET with a client certificate: p50 {figures['cert_get_p50_ms']:.2f} ms, "
          f"p99 {figures['cert_get_p99_ms']:.2f} ms", flush=True)
    print(f"bearer-token authentication overhead (p50 difference): {figures['bearer_overhead_p50_ms']:+.2f} ms",
          flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1000, help="tokens minted (and reviewed round robin)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the TokenReview clients run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent TokenReview clients")
    parser.add_argument("--requests", type=int, default=2000, help="GETs per credential for the overhead")
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.seconds, args.requests = min(args.tokens, 50), min(args.seconds, 2.0), \
            min(args.requests, 100)
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-tokens-") as tmp:
        workdir = Path(tmp)
        with start_apiserver(workdir / "state") as server:
            added = add_user(server.state_dir, "bench", namespace=NAMESPACE, cluster_role="edit")
            figures = asyncio.run(_run(server, workdir, added.kubeconfig, args))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
