"""The exception hierarchy: every error qstudy raises on purpose derives from QStudyError."""

__all__ = ["QStudyError"]


class QStudyError(Exception):
    """Base class of qstudy's errors: bad input, a study that cannot run, a failed trial."""
