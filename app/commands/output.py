"""`-o text|json|yaml`: what `lint`, `audit` and `explain` print for a person or a program."""

from enum import StrEnum
from typing import Any

import orjson
import yaml


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


def dump(document: Any, output: Output) -> str:
    """`document` (plain dicts, lists, strings, numbers) as JSON or YAML text."""
    if output is Output.YAML:
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).rstrip("\n")
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
