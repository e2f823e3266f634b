"""The benchmarks' tables, printed with their columns aligned."""


def print_table(rows: list[list[str]]) -> None:
    """The first row is the header, underlined."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
