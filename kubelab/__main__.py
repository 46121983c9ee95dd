"""``python -m kubelab``: the same as the ``kubelab`` console script.

With ``KUBELAB_NETAUDIT=<file>`` in the environment the process first installs the network audit
(``machinery.netguard.install_audit_from_env``): tests run every component under it.
"""

import sys

from machinery.netguard import install_audit_from_env

install_audit_from_env()

from kubelab.cli import main  # noqa: E402  (after the audit hook, so it sees every import-time connect)

sys.exit(main())
