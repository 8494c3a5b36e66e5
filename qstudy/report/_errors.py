"""ReportError: a study that cannot be reported (not run, or its stores lost)."""

from __future__ import annotations

from qstudy.errors import QStudyError

__all__ = ["ReportError"]


class ReportError(QStudyError):
    """The study has no record to report from, or its record is inconsistent."""
