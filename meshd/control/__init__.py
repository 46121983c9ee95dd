"""meshd's control plane (istiod's role): CA, sidecar injector, config compile and push, proxy status.

Runs as ``kubelab meshd``, a host process supervised like the other control-plane components.
Talks to the apiserver as an ordinary client and to sidecars over :mod:`meshd.api.protocol`.
"""
