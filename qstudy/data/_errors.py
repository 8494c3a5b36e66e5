"""The error every `qstudy.data` function raises for bad input."""

from qstudy.errors import QStudyError

__all__ = ["DataError"]


class DataError(QStudyError):
    """Bad or missing data: a file that does not exist or cannot be parsed, an empty set."""
