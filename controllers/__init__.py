"""controllers: the controller-manager (``kubelab controller-manager``).

Informer → workqueue → idempotent ``sync(key)`` controllers: ReplicaSet, Deployment, garbage
collector, endpoints, node lifecycle, namespace, serviceaccount, pod GC; ``manager`` runs them under
leader election, ``server`` is the process. Imports ``machinery`` only (see DESIGN.md).
"""
