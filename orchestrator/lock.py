"""The study lock: one `scaling run` per results folder at a time.

Two drivers on one folder would run the same trials twice and race on their rows. The lock is
`<results>/_lock`, created with O_EXCL (atomic on POSIX and NFSv3+), holding the holder's pid,
host and start time. A lock whose holder is a dead pid on this host is stale (the driver
crashed) and is taken over; a lock held from another host cannot be checked from here, so the
error says who holds it and which file to delete once that driver is known to be gone.
On object stores (s3://, gs://) there is no exclusive create: the check is best effort.
"""

from __future__ import annotations

import json
import os
import socket
import time

from orchestrator.store import Store


class StudyLockedError(RuntimeError):
    """Another live driver holds the results folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class StudyLock:
    def __init__(self, store: Store):
        self.store = store
        self.path = store.path("_lock")
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}

    def _holder(self) -> dict | None:
        return self.store.read_json(self.path)

    def _refuse(self, holder: dict) -> None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
        raise StudyLockedError(
            f"results folder {self.store.uri} is in use by pid {holder.get('pid')} on host "
            f"{holder.get('host')} (since {since}); wait for that run to finish, or delete "
            f"{self.path} if that process is gone")

    def acquire(self) -> "StudyLock":
        blob = json.dumps(self.me).encode()
        if not self.store.local:
            holder = self._holder()
            if holder and holder != self.me:
                self._refuse(holder)
            self.store.write_bytes(self.path, blob)
            return self
        for _ in range(3):  # retry after removing a stale lock (another taker may race us)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # released between our open and read
                    continue
                if holder.get("host") == self.me["host"] and not _pid_alive(int(holder["pid"])):
                    stale = self.path + f".stale-{os.getpid()}"
                    try:  # rename first: of two racing takers only one moves the stale file
                        os.replace(self.path, stale)
                        os.remove(stale)
                    except FileNotFoundError:
                        pass
                    continue
                self._refuse(holder)
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                return self
        raise StudyLockedError(f"could not take the study lock {self.path} after 3 tries")

    def release(self) -> None:
        holder = self._holder()
        if holder and holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
            self.store.fs.delete_file(self.path)

    def __enter__(self) -> "StudyLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
