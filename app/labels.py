"""Label keys, label values and object names, checked as Kubernetes checks them.

Same rules as `IsQualifiedName`, `IsValidLabelValue` and `IsDNS1123Subdomain` in
k8s.io/apimachinery/pkg/util/validation. Each check returns the list of problems, written
for a person; an empty list means valid.
"""

import re

QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253

_QUALIFIED_NAME = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS1123_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*")

_NAME_CHARS = (
    "must be 63 characters or fewer of letters, digits, '-', '_' or '.', "
    "beginning and ending with a letter or digit (e.g. 'MyName', 'my.name', '123-abc')"
)
_SUBDOMAIN_CHARS = (
    "must be lowercase letters, digits, '-' or '.', beginning and ending with a letter "
    "or digit, at most 253 characters (e.g. 'example.com')"
)


def dns1123_subdomain_problems(value: str) -> list[str]:
    """Problems with `value` as a DNS-1123 subdomain (object names, label key prefixes)."""
    if not value:
        return ["must not be empty"]
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        return [f"is {len(value)} characters long; {_SUBDOMAIN_CHARS}"]
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return [_SUBDOMAIN_CHARS]
    return []


def qualified_name_problems(key: str) -> list[str]:
    """Problems with `key` as a label key: `[prefix/]name`."""
    parts = key.split("/")
    if len(parts) > 2:
        return ["may contain at most one '/', between a DNS subdomain prefix and a name "
                "(e.g. 'example.com/MyName')"]
    problems: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        problems += [f"prefix {problem}" for problem in dns1123_subdomain_problems(parts[0])]
    if not name:
        problems.append("name part must not be empty")
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH or not _QUALIFIED_NAME.fullmatch(name):
        problems.append(f"name part {_NAME_CHARS}")
    return problems


def label_value_problems(value: str) -> list[str]:
    """Problems with `value` as a label value (may be empty)."""
    if len(value) > LABEL_VALUE_MAX_LENGTH or not _LABEL_VALUE.fullmatch(value):
        return [
            "must be empty or 63 characters or fewer of letters, digits, '-', '_' or '.', "
            "beginning and ending with a letter or digit"
        ]
    return []
