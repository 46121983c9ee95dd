"""The official ``kubernetes`` Python client, built the way its users build it.

Every field of the client's models is Optional and parts of it are untyped; the tests assert
concrete values, so they use the client dynamically (``Any``).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as typed_client
from kubernetes import config, watch

from kubelab.testing import RunningApiServer

NS = "default"

client: Any = typed_client
Watch: Any = watch.Watch
new_client_from_config: Any = config.new_client_from_config


def new_client(server: RunningApiServer) -> Any:
    """An ApiClient built from the cluster's kubeconfig, as users build one."""
    api: Any = new_client_from_config(config_file=str(server.kubeconfig))
    return api
