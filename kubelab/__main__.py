"""``python -m kubelab``: the same as the ``kubelab`` console script."""

import sys

from kubelab.cli import main

sys.exit(main())
