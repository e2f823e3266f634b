"""JSON values that a review may carry but Python's numbers cannot hold as written."""


class OutOfRangeNumber(float):
    """A JSON number too large for a double (`1e400`): infinite here, its text kept.

    orjson refuses such numbers; the review is parsed again so that the number arrives at
    validation as a value it can refuse by field, quoting `text`, instead of the whole
    body being unreadable.
    """

    __slots__ = ("text",)

    text: str

    def __new__(cls, text: str) -> "OutOfRangeNumber":
        number = super().__new__(cls, "-inf" if text.lstrip().startswith("-") else "inf")
        number.text = text
        return number
