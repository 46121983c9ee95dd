"""Admission webhook overhead: ``python bench/webhooks.py [--creates N] [--store memory|sqlite]``.

Starts an apiserver in this process (``tests.apiserver.conftest.embedded_api``) and a no-op
mutating webhook served by this process over HTTPS (``tests.apiserver.webhooks.hookserver``),
then times sequential ConfigMap creates without any webhook configuration and with one mutating
webhook that allows everything, and prints create p50/p99 for both and the difference (targets:
at most +3 ms at p50 and +10 ms at p99). Client, apiserver and webhook share one event loop, so
the absolute figures include the client's own work; the difference is the webhook's cost.
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
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from tests.apiserver.conftest import Api, embedded_api  # noqa: E402
from tests.apiserver.webhooks.hookserver import HookServer  # noqa: E402

MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _creates(api: Api, prefix: str, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        status, body = await api.request("POST", CONFIGMAPS, {"metadata": {"name": f"{prefix}-{i}"},
                                                              "data": {"k": "v"}})
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 201:
            raise SystemExit(f"create failed: {status} {body}")
    return latencies


async def _run(creates: int, store: str) -> None:
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-webhooks-") as tmp:
        async with embedded_api(Path(tmp) / "state", store=store) as api, \
                HookServer(Path(tmp) / "hook-pki").running() as hooks:
            await _creates(api, "warm", 50)
            plain = await _creates(api, "plain", creates)
            status, body = await api.request("POST", MUTATING, {"metadata": {"name": "noop"}, "webhooks": [{
                "name": "noop.kubelab.test", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": hooks.url("/noop"), "caBundle": hooks.ca_bundle},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["configmaps"]}]}]})
            if status != 201:
                raise SystemExit(f"configuration refused: {status} {body}")
            while not hooks.reviews.get("/noop"):
                await _creates(api, f"wait-{time.monotonic_ns()}", 1)
            await _creates(api, "warm-hook", 50)
            hooked = await _creates(api, "hooked", creates)
    rows = [("without webhook", plain), ("with no-op mutating webhook", hooked)]
    for label, samples in rows:
        print(f"create {label:<30} p50 {statistics.median(samples):7.2f} ms   p99 {_percentile(samples, 0.99):7.2f} ms")
    d50 = statistics.median(hooked) - statistics.median(plain)
    d99 = _percentile(hooked, 0.99) - _percentile(plain, 0.99)
    print(f"webhook cost: p50 {d50:+.2f} ms (target <= +3 ms: {'met' if d50 <= 3 else 'MISSED'}), "
          f"p99 {d99:+.2f} ms (target <= +10 ms: {'met' if d99 <= 10 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=500)
    parser.add_argument("--store", default="sqlite", choices=("memory", "sqlite"))
    args = parser.parse_args()
    asyncio.run(_run(args.creates, args.store))


if __name__ == "__main__":
    main()
