"""One driver per study: an OS file lock on the study's output folder.

Two drivers of one study would both re-run its unfinished trials under the same Ray
Train names and close each other's MLflow runs. ``qstudy sweep`` therefore holds an
exclusive ``flock`` on ``<storage_path>/<study>/driver.lock`` for as long as it runs, and
writes its host, pid and start time into the file so that a refused driver can say who
holds the study. The kernel drops the lock when its holder dies, however it dies
(SIGKILL included), so a lock left by a killed driver is simply taken over; the file is
never deleted, because deleting a lock file that another process has open lets two
processes each lock a different file of the same name.

Only the standard library: the lock is taken before Ray, Optuna or MLflow is imported.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from qstudy.errors import QStudyError

__all__ = ["DriverLock", "StudyLockedError", "LOCK_FILE"]

LOCK_FILE = "driver.lock"
# A holder writes its details just after it takes the lock; a driver refused in that
# instant finds the file empty and reads again for this long.
_READ_RETRY_S = 1.0


class StudyLockedError(QStudyError):
    """Another live driver holds the study's lock."""


class DriverLock:
    """An exclusive, non-blocking ``flock`` on ``<output>/driver.lock``.

    Use as a context manager around everything a driver does::

        with DriverLock("smoke", "/abs/qstudy_runs/smoke"):
            ...  # Ray, Optuna, MLflow

    The lock belongs to this process alone: the file descriptor is not inherited by the
    processes it starts (Python opens files close-on-exec), so a Ray started by the
    driver does not keep the lock alive after the driver dies.

    Args:
        study: the study's name, for the error message.
        output: the study's output folder; created if missing.
    """

    def __init__(self, study: str, output: str | Path):
        self.study = study
        self.path = Path(output) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record this driver's host, pid and start time in the file.

        Raises:
            StudyLockedError: another live process holds the lock; the message names its
                pid, host, start time and the lock file.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StudyLockedError(_locked_message(self.study, holder, _shown(self.path))) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Empty the file and drop the lock (the file stays: see the module docstring)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    """The holder's details from the lock file; empty while the holder has not written them."""
    deadline = time.monotonic() + _READ_RETRY_S
    while True:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        except (ValueError, UnicodeDecodeError):  # caught mid-write
            holder = None
        if isinstance(holder, dict) or time.monotonic() >= deadline:
            return holder if isinstance(holder, dict) else {}
        time.sleep(0.05)


def _locked_message(study: str, holder: dict, shown_path: str) -> str:
    """``study smoke is being run by pid 1234 on host h since 18:02 (qstudy_runs/smoke/driver.lock)``."""
    pid = holder.get("pid", "?")
    host = holder.get("host", "?")
    since = _since(holder.get("started"))
    return f"study {study} is being run by pid {pid} on host {host} since {since} ({shown_path})"


def _since(started: str | None) -> str:
    """The holder's start as local HH:MM, with the date when it is not today."""
    try:
        when = datetime.datetime.fromisoformat(started).astimezone()
    except (TypeError, ValueError):
        return "?"
    if when.date() == datetime.datetime.now().astimezone().date():
        return f"{when:%H:%M}"
    return f"{when:%Y-%m-%d %H:%M}"


def _shown(path: Path) -> str:
    """The lock file relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
