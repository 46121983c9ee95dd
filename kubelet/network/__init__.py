"""The kubelet's network agent: the service proxy (iptables, like kube-proxy) and the cluster DNS server.

The kubelet process starts a :class:`ServiceProxy` and a :class:`ClusterDNS` next to its pod workers and
passes :func:`resolv_conf_for_pod` to the runtime for every pod; ``kubelab down`` calls
``ServiceProxy.cleanup()``. Both read Services and Endpoints through informers, never the store.
"""

from kubelet.network.dns import ClusterDNS, PodDNSConfig, host_upstream, resolv_conf_for_pod
from kubelet.network.proxy import ServiceProxy

__all__ = ["ClusterDNS", "PodDNSConfig", "ServiceProxy", "host_upstream", "resolv_conf_for_pod"]
