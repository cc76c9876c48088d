"""How a command stops on SIGINT (Ctrl-C) and SIGTERM: one rule for every command.

It stops cleanly (saves, flushes and disconnects as after Ctrl-C) and exits with 128 + the
signal number, 130 for SIGINT and 143 for SIGTERM, the status a shell gives a process the
signal ended. A long-running command catches both with ``StopSignals`` and ends its loop; before
that (start-up) and in short commands, ``SigtermInterrupts`` makes SIGTERM raise ``Terminated``
as Ctrl-C raises ``KeyboardInterrupt``, and ``exit_status`` turns either into the status.

>>> exit_status(KeyboardInterrupt()), exit_status(Terminated())
(130, 143)
"""

from __future__ import annotations

import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception (a ``KeyboardInterrupt``: every clean-up of Ctrl-C runs)."""

    signum = signal.SIGTERM


def exit_status(exc: KeyboardInterrupt) -> int:
    """128 + the number of the signal that raised ``exc`` (SIGINT for a plain ``KeyboardInterrupt``)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


class _Handlers:
    """Within (or from ``install`` to ``restore``): ``handler`` for ``signals``, then the previous
    handlers again (nothing is installed outside the main thread, where Python allows none)."""

    signals: tuple = ()

    def handler(self, signum, frame) -> None:
        raise NotImplementedError

    def install(self):
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self.handler) for s in self.signals}
        return self

    def restore(self) -> None:
        for s, previous in self._previous.items():
            if previous is not None:  # (None: a handler not installed from Python)
                signal.signal(s, previous)
        self._previous = {}

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()


class SigtermInterrupts(_Handlers):
    """Within: SIGTERM raises ``Terminated``, as SIGINT raises ``KeyboardInterrupt``."""

    signals = (signal.SIGTERM,)

    def handler(self, signum, frame) -> None:
        raise Terminated


class StopSignals(_Handlers):
    """Within: SIGINT and SIGTERM set ``event`` (the first one is kept in ``signum``); a second
    signal changes nothing, so the clean stop is not cut short."""

    signals = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, event: threading.Event | None = None):
        self.event = threading.Event() if event is None else event
        self.signum: int | None = None

    def handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = int(signum)
        self.event.set()

    def status(self, otherwise: int = 0) -> int:
        """The exit status: 128 + the signal caught, else ``otherwise``."""
        return otherwise if self.signum is None else 128 + self.signum
