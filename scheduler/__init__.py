"""kube-scheduler for kubelab: queue, cache (with assumed pods), framework and plugins, and the
``kubelab scheduler`` process (:mod:`scheduler.server`). Imports ``machinery`` only."""
