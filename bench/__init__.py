"""Benchmark scripts; each prints its figures (``python bench/apiserver.py --help``).

``bench.apiserver`` drives a real apiserver process over HTTPS; ``bench.storage`` times the
raw stores; ``bench.workload`` builds the objects and measures latency, CPU and memory;
``bench.watchers`` runs watch clients in separate processes. Nothing here is imported by the
product.
"""
