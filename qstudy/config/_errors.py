"""ConfigError: every problem of a config file, listed at once."""

from __future__ import annotations

from qstudy.errors import QStudyError

__all__ = ["ConfigError"]


class ConfigError(QStudyError):
    """A config file that cannot run. ``problems`` holds one line per problem:
    ``FILE: dotted.key: what is wrong, got VALUE``."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
