"""What each connected proxy has: per type the last version/nonce sent, ACKed and NACKed.

Kept by :mod:`meshd.control.push` (one :class:`ProxyRecord` per stream, updated as responses go
out and ACKs / NACKs come in) and read by the debug endpoint (:mod:`meshd.control.debug`,
``/debug/syncz``) behind ``kubelab mesh proxy-status``. The words are istioctl's:

``SYNCED``      the proxy ACKed the last response meshd sent for the type;
``NOT SENT``    meshd has sent nothing of the type (the proxy did not ask, or there is nothing yet);
``STALE``       a response is out and neither ACKed nor NACKed;
``NACKED``      the proxy refused the last response (it keeps its previous configuration); the
                message says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from meshd.api.resources import CLUSTERS, INBOUND, LISTENERS, ROUTES

__all__ = ["NACKED", "NOT_SENT", "STALE", "SYNCED", "TYPE_COLUMNS", "ProxyRecord", "TypeState"]

SYNCED, NOT_SENT, STALE, NACKED = "SYNCED", "NOT SENT", "STALE", "NACKED"
TYPE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clusters", CLUSTERS), ("routes", ROUTES), ("listeners", LISTENERS), ("inbound", INBOUND))


@dataclass
class TypeState:
    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float = 0.0
    acked_version: str = ""
    acked_nonce: str = ""
    nacked_nonce: str = ""
    nack_message: str = ""
    nack_version: str = ""
    subscribed: bool = False

    @property
    def status(self) -> str:
        if not self.sent_nonce:
            return NOT_SENT
        if self.acked_nonce == self.sent_nonce:
            return SYNCED
        if self.nacked_nonce == self.sent_nonce:
            return NACKED
        return STALE

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "sentVersion": self.sent_version, "sentNonce": self.sent_nonce,
                "ackedVersion": self.acked_version, "nackMessage": self.nack_message,
                "nackVersion": self.nack_version}


@dataclass
class ProxyRecord:
    node_id: str
    pod: str
    namespace: str
    identity: str
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeState] = field(default_factory=dict)

    def state(self, type_url: str) -> TypeState:
        found = self.types.get(type_url)
        if found is None:
            found = self.types[type_url] = TypeState()
        return found

    def to_json(self) -> dict[str, Any]:
        return {"id": self.node_id, "pod": self.pod, "namespace": self.namespace, "identity": self.identity,
                "connectedAt": self.connected_at,
                "types": {column: self.state(type_url).to_json() for column, type_url in TYPE_COLUMNS}}
