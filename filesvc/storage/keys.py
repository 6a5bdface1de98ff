"""New storage keys: random, in runs that share their first four hex digits.

On local disk a key's first four digits name its fan-out directory (`ab/cd/<key>`, 65,536
of them: local.py). With every key wholly random, a young store, one holding fewer
objects than there are directories, makes a new directory for nearly every upload: a
mkdir on the event loop, a new inode and block for the file system to allocate and write,
and the fsyncs of the new directory's parents before the upload's 201. Here RUN_LENGTH
keys in a row share one prefix, drawn at random for each run, so a process makes a new
directory once per run at most. Every directory is still as likely as any other to be
drawn, so over time they fill evenly, in steps of a run.

The other 28 digits are random for every key, as before (with a UUID4's version and
variant bits): keys stay unique and unguessable. A process has runs of its own (each
worker of `--workers N` too), and S3 sees a key as a plain name either way.
"""

from __future__ import annotations

from filesvc.ids import uuid4_hex

# Digits of a key that pick its fan-out directory on local disk (two levels of two).
PREFIX_DIGITS = 4
# Keys per prefix: a young store makes a directory per this many uploads, not per upload.
RUN_LENGTH = 256


class KeyRuns:
    """Keys `run_length` at a time under one random prefix."""

    def __init__(self, run_length: int = RUN_LENGTH) -> None:
        self._run_length = run_length
        self._prefix = ""
        self._left = 0

    def new_key(self) -> str:
        """A new, unique key (32 hex digits) in the current run's fan-out directory."""
        key = uuid4_hex()
        if self._left <= 0:
            self._prefix, self._left = key[:PREFIX_DIGITS], self._run_length
        self._left -= 1
        return self._prefix + key[PREFIX_DIGITS:]


_runs = KeyRuns()


def new_storage_key() -> str:
    """A new blob key, in this process's current run."""
    return _runs.new_key()
