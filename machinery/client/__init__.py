"""The client machinery every component uses: REST + watch client, informers, workqueue, workers.

Layering: imports only ``machinery``; components (scheduler, controllers, kubelet, meshd) talk to
the apiserver exclusively through this package. Re-exports the public names so callers write
``from machinery.client import ApiClient, SharedInformer, RateLimitingQueue``.
"""

from machinery.client.controller import run_workers
from machinery.client.events import EventRecorder
from machinery.client.informer import InformerFactory, ListWatcher, SharedInformer, wait_for_cache_sync
from machinery.client.leaderelection import LeaderElector
from machinery.client.ratelimit import TokenBucket
from machinery.client.rest import ApiClient, WatchEvent, resource_path
from machinery.client.store import INDEX_NAMESPACE, INDEX_NODE, INDEX_OWNER_UID, Store
from machinery.client.workqueue import RateLimitingQueue, ShutDown

__all__ = [
    "INDEX_NAMESPACE",
    "INDEX_NODE",
    "INDEX_OWNER_UID",
    "ApiClient",
    "EventRecorder",
    "InformerFactory",
    "LeaderElector",
    "ListWatcher",
    "RateLimitingQueue",
    "SharedInformer",
    "ShutDown",
    "Store",
    "TokenBucket",
    "WatchEvent",
    "resource_path",
    "run_workers",
    "wait_for_cache_sync",
]
