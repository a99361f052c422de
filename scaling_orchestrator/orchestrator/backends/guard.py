"""The process a command trial runs under: it ends the command when the trial's process dies.

    python guard.py TRIAL_PID "COMMAND LINE"

Started as the leader of a fresh process group (backends/command.py), it runs the command line in
a shell in that group and exits with its status (a signal n as 128 + n, as a shell reports it).
Tune ends a stopped trial's process outright (an ASHA stop, a Tuner ending) and a process whose
parent dies is not ended with it: every POLL_SECONDS the guard checks that TRIAL_PID is still its
parent, and when it is not, sends its group SIGTERM, then SIGKILL after GRACE_SECONDS, so no
trainer keeps a GPU busy for a trial nobody waits for. SIGTERM sent to the group by the trial
(stop_group) reaches the command too; the guard waits for it and then exits.

Standard library only: it runs by path (python -S), before anything of the package is imported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0


def main(parent: int, line: str) -> int:
    signal.signal(signal.SIGTERM, lambda *_: None)  # the group's SIGTERM is for the command
    child = subprocess.Popen(line, shell=True)
    while True:
        try:
            code = child.wait(timeout=POLL_SECONDS)
            return 128 - code if code < 0 else code
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent:  # the trial's process is gone
            os.killpg(0, signal.SIGTERM)
            try:
                child.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
