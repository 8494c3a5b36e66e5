"""One long-lived thread per process for the Qiskit work a trial does.

Qiskit 2.6.2's Rust core (``qiskit._accelerate``) crashes the process (SIGSEGV in
mimalloc's ``_mi_subproc``, nondeterministically) when it is entered from a new OS thread
after other threads that entered it have exited. Three short-lived threads that each build
and transpile a 2-qubit circuit crash 2 runs in 5; the same calls made from one persistent
thread crashed 0 in 6 (docs/stack-notes.md#qiskit-and-short-lived-threads; no upstream
issue was found for it). A study trial trained in its Tune trial's process runs in a new
thread each time Tune reuses that process, so every Qiskit call qstudy makes during a
trial goes through :func:`on_qiskit_thread`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["on_qiskit_thread"]

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def on_qiskit_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """Calls ``fn(*args, **kwargs)`` on this process's Qiskit thread and returns its result
    (or raises its exception); called from that thread, calls it directly."""
    global _executor
    if threading.current_thread().name.startswith("qstudy-qiskit"):
        return fn(*args, **kwargs)
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qstudy-qiskit")
    return _executor.submit(fn, *args, **kwargs).result()
