"""Container runtimes behind one protocol (``interface``): ``fake`` for hollow nodes, Docker next."""
