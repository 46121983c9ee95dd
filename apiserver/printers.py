"""Server-side printing entry points, kept at the path handlers were told to import.

The implementation lives in the :mod:`apiserver.printing` package (split by kind family);
this module only re-exports its public API: :func:`to_table` for list / get answers,
:func:`column_definitions` and :func:`row_for` for one-row watch Tables.
"""

from apiserver.printing import (
    INCLUDE_OBJECT_VALUES,
    check_include_object,
    column_definitions,
    human_duration,
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
