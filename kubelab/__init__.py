"""What people type: the ``kubelab`` CLI (up/down/status/apiserver), the process launcher and
the pytest harness that starts real apiservers for integration tests.

May import components (``apiserver`` ...) to launch them; nothing imports ``kubelab``.
"""
