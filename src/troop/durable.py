"""Making a rename survive a crash (shared by the scout and the FileManager)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a new name in it is durable, not only the file's bytes.

    Without it a power cut can bring the old file back after a rename. Platforms that cannot
    open a directory (Windows) are skipped silently.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
