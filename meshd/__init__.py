"""meshd: the service mesh -- Kubernetes and Istio together (see docs and DESIGN.md's Mesh section).

- :mod:`meshd.api` -- the contract shared by both halves: resources, wire protocol, identity.
- ``meshd.control`` -- the control plane (istiod's role): CA, sidecar injector, config compile and push.
- ``meshd.proxy`` -- the sidecar data plane, run inside pods from the ``kubelab/proxyv2`` image.

``meshd.proxy`` never imports ``meshd.control`` (and the reverse): they meet only on the wire.
"""
