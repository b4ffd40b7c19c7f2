"""Files written atomically: the bytes go to a hidden temporary file beside the target, are flushed to disk,
and the file is renamed over the target. A reader, or a run resumed after a crash, sees the complete previous
file or the complete new one, never a partial one. A writer killed midway (SIGKILL skips every cleanup) leaves
only its hidden temporary, which the next write of the same file removes.

Checkpoints, model exports, evaluation images, CSV logs and reports are all written through `write_atomically`.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """`write(handle)` into a hidden temporary beside `path`, then flushed, synced and renamed over `path`; on any
    error the temporary is removed and `path` is left as it was. Returns `path`."""
    path, temporary = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
        with os.fdopen(fd, 'wb') as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f'.{glob.escape(path.name)}.*.tmp'):  # left by writers that were killed
        stale.unlink(missing_ok=True)
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """`data` as the whole content of `path`, written atomically."""
    return write_atomically(path, lambda handle: handle.write(data))


def write_text_atomically(path: str | Path, text: str) -> Path:
    """`text` (UTF-8) as the whole content of `path`, written atomically."""
    return write_bytes_atomically(path, text.encode('utf-8'))
