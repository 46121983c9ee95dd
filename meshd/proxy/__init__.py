"""meshd's sidecar proxy: the data plane inside each meshed pod (image ``kubelab/proxyv2``).

Applies the configuration of :mod:`meshd.api.resources` pushed by the control plane; never imports
``meshd.control``.
"""
