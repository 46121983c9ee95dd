"""The kubelab API server: Kubernetes REST API over aiohttp, backed by a pluggable store."""
