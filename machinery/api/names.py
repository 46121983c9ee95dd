"""Syntax rules of Kubernetes names, labels, annotations and keys, and the error collector.

Used by the validation modules. Messages follow Kubernetes' wording word for word in meaning
(``a lowercase RFC 1123 label must consist of ...``) so clients and tests can match them.
"""

import json
import re
from typing import Any

from machinery.errors import StatusCause

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"

_LABEL = re.compile(f"^{DNS1123_LABEL_FMT}$")
_SUBDOMAIN = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_DNS1035 = re.compile(f"^{DNS1035_LABEL_FMT}$")
_QUALIFIED = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE = re.compile(f"^{LABEL_VALUE_FMT}$")
_CONFIG_KEY = re.compile(f"^{CONFIG_KEY_FMT}$")
_IANA_CHARS = re.compile("^[-a-z0-9]+$")
_HAS_LETTER = re.compile("[a-z]")


def _too_long(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label(value: str) -> list[str]:
    """Errors for an RFC 1123 label (container names, namespace names)."""
    errs = []
    if len(value) > 63:
        errs.append(_too_long(63))
    if not _LABEL.match(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
            f"regex used for validation is '{DNS1123_LABEL_FMT}')")
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    """Errors for an RFC 1123 subdomain (most object names)."""
    errs = []
    if len(value) > 253:
        errs.append(_too_long(253))
    if not _SUBDOMAIN.match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
            f"used for validation is '{DNS1123_SUBDOMAIN_FMT}')")
    return errs


def dns1035_label(value: str) -> list[str]:
    """Errors for an RFC 1035 label (service names)."""
    errs = []
    if len(value) > 63:
        errs.append(_too_long(63))
    if not _DNS1035.match(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')")
    return errs


def qualified_name(value: str) -> list[str]:
    """Errors for a label or annotation key (``[prefix/]name``)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        errs = []
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
            f"regex used for validation is '{QUALIFIED_NAME_FMT}') with an optional DNS subdomain "
            "prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _too_long(63))
    if name and not _QUALIFIED.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
            f"for validation is '{QUALIFIED_NAME_FMT}')")
    return errs


def label_value(value: str) -> list[str]:
    """Errors for a label value (may be empty)."""
    errs = []
    if len(value) > 63:
        errs.append(_too_long(63))
    if not _LABEL_VALUE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
            f"'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')")
    return errs


def config_key(value: str) -> list[str]:
    """Errors for a ConfigMap or Secret key."""
    errs = []
    if len(value) > 253:
        errs.append(_too_long(253))
    if not _CONFIG_KEY.match(value):
        errs.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
            f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{CONFIG_KEY_FMT}')")
    elif value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def port_name(value: str) -> list[str]:
    """Errors for an IANA service name (container and service port names)."""
    errs = []
    if len(value) > 15:
        errs.append(_too_long(15))
    if not _IANA_CHARS.match(value):
        errs.append("must contain only alphanumeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def show(value: Any) -> str:
    """Format a value as Go's %v/%q would in a field error."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Errors:
    """Collects field errors as :class:`StatusCause` with Kubernetes' reasons and wording."""

    def __init__(self) -> None:
        self.causes: list[StatusCause] = []

    def invalid(self, field: str, value: Any, detail: str) -> None:
        msg = f"Invalid value: {show(value)}"
        self.causes.append(StatusCause(field, f"{msg}: {detail}" if detail else msg, "FieldValueInvalid"))

    def required(self, field: str, detail: str = "") -> None:
        msg = f"Required value: {detail}" if detail else "Required value"
        self.causes.append(StatusCause(field, msg, "FieldValueRequired"))

    def duplicate(self, field: str, value: Any) -> None:
        self.causes.append(StatusCause(field, f"Duplicate value: {show(value)}", "FieldValueDuplicate"))

    def not_supported(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        listed = ", ".join(json.dumps(s) for s in supported)
        self.causes.append(StatusCause(
            field, f"Unsupported value: {show(value)}: supported values: {listed}", "FieldValueNotSupported"))

    def forbidden(self, field: str, detail: str) -> None:
        self.causes.append(StatusCause(field, f"Forbidden: {detail}", "FieldValueForbidden"))

    def not_found(self, field: str, value: Any) -> None:
        self.causes.append(StatusCause(field, f"Not found: {show(value)}", "FieldValueNotFound"))

    def too_long(self, field: str, limit: int) -> None:
        self.causes.append(StatusCause(
            field, f"Too long: must have at most {limit} bytes", "FieldValueTooLong"))

    def check(self, field: str, value: str, rule: Any) -> None:
        """Run a syntax rule (one of the functions above) and record each failure."""
        for detail in rule(value):
            self.invalid(field, value, detail)

    def enum(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        if value is not None and value not in supported:
            self.not_supported(field, value, supported)

    def non_negative(self, field: str, value: Any) -> None:
        if isinstance(value, int) and value < 0:
            self.invalid(field, value, "must be greater than or equal to 0")

    def positive(self, field: str, value: Any) -> None:
        if isinstance(value, int) and value <= 0:
            self.invalid(field, value, "must be greater than 0")

    def port(self, field: str, value: Any) -> None:
        if isinstance(value, int) and not 1 <= value <= 65535:
            self.invalid(field, value, "must be between 1 and 65535, inclusive")
