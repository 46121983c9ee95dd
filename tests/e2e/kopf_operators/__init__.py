"""Example kopf operators that the kopf end-to-end tests run against kubelab (``kopf run``)."""
