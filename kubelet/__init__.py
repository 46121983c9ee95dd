"""kubelet: the node agent — registration and lease, pod workers, pod sync and status, runtimes.

``kubelet.server`` is the process (``kubelab kubelet``); ``kubelet.hollow.KubeletGroup`` runs one
or many nodes in it; ``kubelet.runtime`` holds the ContainerRuntime protocol and the fake runtime.
"""
