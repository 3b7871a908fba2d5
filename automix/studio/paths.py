"""Validation of the file names the studio page sends (export folders): no way out of the song's output folder."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from automix.errors import SettingsError

#: Longest export name accepted (characters).
MAX_NAME_CHARS = 120
_ALLOWED = re.compile(r"^[\w .,()+=@-]+$")


def safe_subpath(root: str | Path, name: str) -> Path:
    """``root / name`` for a relative ``name`` from the page, refusing every way out of ``root``.

    Refused, with a message that says why: an empty name, absolute paths (``/x``, ``C:\\x``,
    ``~/x``), ``..`` or hidden (``.x``) parts, characters other than letters, digits, spaces
    and ``_ - . , ( ) + = @``, more than :data:`MAX_NAME_CHARS` characters, and names that
    resolve (through symbolic links) outside ``root``.

    Raises
    ------
    SettingsError
    """
    if not isinstance(name, str) or not name.strip():
        raise SettingsError("export name is empty; give a folder name such as 'take 1'")
    if len(name) > MAX_NAME_CHARS:
        raise SettingsError(f"export name is longer than {MAX_NAME_CHARS} characters")
    if "\x00" in name:
        raise SettingsError("export name contains a NUL character")
    unified = name.replace("\\", "/")
    if unified.startswith(("/", "~")) or PureWindowsPath(name).drive or PurePosixPath(unified).is_absolute():
        raise SettingsError(f"export name {name!r} is an absolute path; give a name inside the output folder")
    parts = [p for p in PurePosixPath(unified).parts if p not in ("", ".")]
    if not parts:
        raise SettingsError(f"export name {name!r} names no folder")
    for part in parts:
        if part == "..":
            raise SettingsError(f"export name {name!r} leaves the output folder ('..' is not allowed)")
        if part.startswith("."):
            raise SettingsError(f"export name {name!r} has a hidden part {part!r}")
        if not _ALLOWED.match(part):
            raise SettingsError(f"export name {name!r} has characters other than letters, digits, spaces "
                                "and _ - . , ( ) + = @")
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise SettingsError(f"export name {name!r} leads outside the output folder {base}")
    return target
