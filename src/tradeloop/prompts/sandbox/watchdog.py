"""A thread that raises an exception inside threads whose work is past its deadline.

CPython checks for such an asynchronous exception between bytecodes, so it stops any
pure-Python loop of compiled template code (or of Jinja's compiler). Long single C calls cannot
be interrupted; the sandbox bounds the size of every value, so no single C call on one can
take long. The thread polls on its own (registering only writes a dict entry), because waking
it for every render would cost a thread switch per render.

An asynchronous exception can land where Python swallows it (a weakref callback, a `__del__`:
"Exception ignored in …"), so it is raised again every `REFIRE_S` until the watched work
says it is over (`closed`, set first thing when it ends): a late exception can then only
surface in the few bytecodes between closing and unregistering.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Protocol


class Deadline(Protocol):
    deadline: float
    fired: bool
    closed: bool


class Watchdog:
    """Raises `exception` in a registered thread once its deadline has passed."""

    POLL_S = 0.02
    REFIRE_S = 0.1

    def __init__(self, exception: type[BaseException]) -> None:
        self._exception = exception
        self._lock = threading.Lock()
        self._watched: dict[int, Deadline] = {}
        self._thread: threading.Thread | None = None

    def register(self, watched: Deadline) -> None:
        with self._lock:
            self._watched[threading.get_ident()] = watched
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prompt-render-watchdog",
                                                daemon=True)
                self._thread.start()

    def unregister(self) -> None:
        ident = threading.get_ident()
        with self._lock:
            watched = self._watched.pop(ident, None)
            if watched is not None and watched.fired:
                # Fired but not raised yet: clear it so it cannot surface in unrelated code.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)

    def _run(self) -> None:
        last_fired: dict[int, float] = {}
        while True:
            time.sleep(self.POLL_S)
            with self._lock:
                now = time.monotonic()
                for ident, watched in self._watched.items():
                    overdue = now > watched.deadline + self.POLL_S
                    if watched.closed or not overdue or (
                            watched.fired and now - last_fired[ident] < self.REFIRE_S):
                        continue
                    watched.fired = True
                    last_fired[ident] = now
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(ident), ctypes.py_object(self._exception))
