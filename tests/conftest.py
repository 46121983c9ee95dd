"""Root test configuration: the kubelab pytest plugin (apiserver processes, real kubectl)."""

pytest_plugins = ["kubelab.pytest_plugin"]
