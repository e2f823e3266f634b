"""`-o text|json|yaml`: what `lint`, `audit` and `explain` print for a person or a program."""

from collections.abc import Iterable
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


def table(rows: Iterable[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, the last one left as it is."""
    rows = list(rows)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=False)),
                                row[-1]]).rstrip() for row in rows)
