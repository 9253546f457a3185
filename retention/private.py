"""Private by default: what the product writes can be read by its owner's account only.

Customer data sits in the workspace (the DuckDB database, its write-ahead log and spill files),
in backups, in the command line's outputs and in temporary staging files. Other accounts on a
shared machine must not read any of it, so:

* :func:`restrict_umask` makes every file the process creates from then on ``600`` and every
  folder ``700`` (``umask |= 077``: a stricter umask the user set stays as it is). The front
  doors call it first (the command line, the app), and so does opening a :class:`Workspace`,
  because DuckDB creates its own files (WAL, spill folder) whenever it needs them.
* :func:`tighten` takes the group and other bits off something that already exists (a
  workspace made by an older version, a copied folder), and says so in the log.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("retention")

#: What the product's folders and files may be at most: the owner only.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS = 0o077


def restrict_umask() -> int:
    """From now on, create files ``600`` and folders ``700`` (keeping a stricter umask).

    Returns the umask in force before. The umask belongs to the process, so this holds for
    every thread and for files DuckDB or the temp-file module create.
    """
    old = os.umask(_OTHERS)  # read it (and never widen it, even for a moment)
    os.umask(old | _OTHERS)
    return old


def tighten(path: Path) -> bool:
    """Take the group/other permission bits off ``path`` when it has any; True when changed.

    A note goes to the log (never the file's contents), so a user who shared the folder on
    purpose can see what happened and why.
    """
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return False
    if path.is_symlink() or not mode & _OTHERS:
        return False
    path.chmod(mode & ~_OTHERS)
    log.warning(
        "Made %s readable by its owner only (it was %s, now %s): it holds customer data.",
        path,
        oct(mode),
        oct(mode & ~_OTHERS),
    )
    return True


def tighten_tree(folder: Path) -> int:
    """:func:`tighten` a folder and everything inside it; the number of paths changed."""
    changed = int(tighten(folder))
    if folder.is_dir() and not folder.is_symlink():
        for root, dirs, files in os.walk(folder):
            for name in (*dirs, *files):
                changed += tighten(Path(root) / name)
    return changed


def make_private_dir(folder: Path) -> Path:
    """Create ``folder`` (and missing parents) as ``700``; an existing one is tightened."""
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tighten(folder)
    return folder
