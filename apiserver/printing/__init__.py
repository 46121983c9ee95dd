"""Server-side printing (``meta.k8s.io/v1`` Table) for every kind kubelab serves.

Handlers call :func:`to_table` for lists and single GETs; the watch path calls
:func:`column_definitions` once per kind and :func:`row_for` per event. Module map:
``table`` (assembly, registry, includeObject), ``columns`` (column type), ``humanize``
(ages, labels, selectors), and one module per family of kinds (``pods``, ``workloads``,
``network``, ``cluster``, ``config``).
"""

from apiserver.printing.humanize import human_duration
from apiserver.printing.table import (
    INCLUDE_OBJECT_VALUES,
    check_include_object,
    column_definitions,
    row_for,
    to_table,
)

__all__ = [
    "INCLUDE_OBJECT_VALUES",
    "check_include_object",
    "column_definitions",
    "human_duration",
    "row_for",
    "to_table",
]
