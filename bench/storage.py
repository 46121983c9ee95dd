"""Raw store write rate: the ceiling the apiserver's create path is compared with.

``bench.apiserver`` calls :func:`raw_create_rate` in the same run as its HTTP phase, with the
same durability as the apiserver's store: :class:`SqliteStorage` with its default
``synchronous=NORMAL`` in WAL mode on a fresh file next to the apiserver's, or
:class:`EtcdStorage` (aetcd txn puts) against the very etcd the apiserver uses, under its own
key prefix. Both go through :func:`apiserver.storage.benchmark.measure_create_rate` (16 tasks,
~300-byte values, fresh keys), so the only difference from the HTTP figure is the apiserver.

Run alone: ``python -m bench.storage --store sqlite|etcd [--count N]`` (etcd is started here).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from apiserver.storage.benchmark import measure_create_rate
from apiserver.storage.etcd import EtcdStorage
from apiserver.storage.interface import Storage
from apiserver.storage.sqlite import SqliteStorage


async def raw_create_rate(store: str, *, workdir: Path, etcd_url: str = "", count: int = 5000,
                          concurrency: int = 16) -> float:
    """Creates/s straight into a ``store`` ("sqlite" | "etcd") from ``concurrency`` tasks."""
    storage: Storage
    if store == "sqlite":
        storage = SqliteStorage(workdir / "raw-bench.db")
    elif store == "etcd":
        storage = EtcdStorage([etcd_url], "/raw-bench")
    else:
        raise ValueError(f"unknown store {store!r}")
    await storage.start()
    try:
        # A short warm-up so connection setup and table creation are not in the figure.
        await measure_create_rate(storage, count=min(200, count), concurrency=concurrency, prefix="/warm/")
        return await measure_create_rate(storage, count=count, concurrency=concurrency, prefix="/bench/raw/")
    finally:
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="raw store create rate (16 concurrent tasks)")
    parser.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubelab-rawbench-") as tmp:
        workdir = Path(tmp)
        if args.store == "etcd":
            from tests.etcd_server import EtcdServer

            with EtcdServer(workdir / "etcd") as etcd:
                rate = asyncio.run(raw_create_rate("etcd", workdir=workdir, etcd_url=etcd.client_url,
                                                   count=args.count))
        else:
            rate = asyncio.run(raw_create_rate("sqlite", workdir=workdir, count=args.count))
    print(f"raw {args.store} create rate (16 tasks, {args.count} keys): {rate:,.0f} creates/s")


if __name__ == "__main__":
    main()
