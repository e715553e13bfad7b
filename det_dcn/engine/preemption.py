"""Stopping a training run cleanly on SIGTERM / SIGUSR1 (preemption, SLURM's ``--signal``, Kubernetes).

While the loop runs, ``StopRequest`` records the first SIGTERM or SIGUSR1 this process gets instead of dying. After
every iteration the ranks agree (a one-integer all-reduce over the CPU group; nothing in a single process) whether
any of them got one, so one rank receiving the signal is enough and every rank stops after the same iteration. The
trainer then saves a normal checkpoint at that iteration, logs one line saying how to resume, and raises
``TrainingStopped``, a ``SystemExit`` with status ``EXIT_STOPPED`` (75, sysexits' EX_TEMPFAIL: "try again later"),
which tools/slurm_train.sh uses to requeue the job. A further signal while stopping (during the save) is reported and
otherwise ignored: the checkpoint is written to a temporary file and renamed, so nothing can be half-written anyway.
"""

import os
import shlex
import signal
import sys
import threading
from typing import Dict, Optional

from det_dcn.utils import comm

EXIT_STOPPED = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingStopped(SystemExit):
    """Training stopped on a signal after saving a checkpoint; the process exits with ``EXIT_STOPPED``."""

    def __init__(self, message: str):
        super().__init__(EXIT_STOPPED)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StopRequest:
    """Catches SIGTERM / SIGUSR1 between ``install()`` and ``uninstall()`` (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.signum = 0  # the first signal received, 0 = none
        self._previous: Dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            # Not logging: a handler may interrupt a logging call. os.write is safe here.
            os.write(2, f"[rank{comm.get_rank()}] {signal.Signals(signum).name} received again (or forwarded by the "
                        "launcher) while stopping: ignored; the checkpoint is being saved and the process exits when it is complete\n".encode())
            return
        self.signum = signum

    def install(self) -> bool:
        """Start catching (and forget an earlier signal); False when already installed or not the main thread.

        Install it before starting data loader worker processes: forked workers inherit the handler, so a
        signal sent to every process of the job (SLURM does) does not kill them under the main process."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return False  # Python delivers signals to the main thread only; a trainer run elsewhere keeps defaults
        self.signum = 0
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self) -> Optional[str]:
        """The name of the signal that any rank received ("SIGTERM"), the same on every rank; None if none did.
        A collective: every rank calls it after the same iteration."""
        signum = comm.all_reduce_max(self.signum)
        return signal.Signals(signum).name if signum else None


def resume_command() -> str:
    """This process's command line with ``--resume`` added (what continues a stopped run)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(".py"):
        argv = ["python"] + argv
    if "--resume" not in argv:
        argv.append("--resume")
    return " ".join(shlex.quote(a) for a in argv)
