"""Names in the mount: which database a file name belongs to and what kind of file it is.

LiteFS's namespace is flat: the suffix decides the kind (``-journal``, ``-wal``, ``-shm``, ``-pos``,
``-lock``) and any other name is a database. ``.primary`` and ``.lag`` are reserved.
"""

from __future__ import annotations

import enum


class FileKind(enum.Enum):
    DATABASE = "database"
    JOURNAL = "journal"
    WAL = "wal"
    SHM = "shm"
    POS = "pos"
    LOCK = "lock"


#: Suffixes in the order they are tried (none is a suffix of another).
_SUFFIXES: tuple[tuple[str, FileKind], ...] = (
    ("-journal", FileKind.JOURNAL),
    ("-wal", FileKind.WAL),
    ("-shm", FileKind.SHM),
    ("-pos", FileKind.POS),
    ("-lock", FileKind.LOCK),
)

#: Kinds stored as real files under ``dbs/<name>/`` (the others are synthesised).
BACKED_KINDS = (FileKind.DATABASE, FileKind.JOURNAL, FileKind.WAL, FileKind.SHM)

#: File name of each backed kind inside ``dbs/<name>/``.
BACKING_NAMES = {
    FileKind.DATABASE: "database",
    FileKind.JOURNAL: "journal",
    FileKind.WAL: "wal",
    FileKind.SHM: "shm",
}

PRIMARY_FILENAME = ".primary"
LAG_FILENAME = ".lag"
RESERVED_NAMES = (PRIMARY_FILENAME, LAG_FILENAME)


class InvalidNameError(ValueError):
    """A name that cannot be a file in the mount (empty, contains '/', NUL, or reserved)."""


def parse_filename(name: str) -> tuple[str, FileKind]:
    """Split a mount file name into (database name, kind).

    Raises InvalidNameError for names that cannot name a database file (the FUSE layer answers those
    with ENOENT or EINVAL).
    """
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidNameError(f"invalid file name {name!r}")
    if name in RESERVED_NAMES:
        raise InvalidNameError(f"reserved file name {name!r}")
    for suffix, kind in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], kind
    return name, FileKind.DATABASE


def filename(db: str, kind: FileKind) -> str:
    """The mount file name of a database file of the given kind."""
    if kind is FileKind.DATABASE:
        return db
    return f"{db}-{kind.value}"


def is_valid_db_name(name: str) -> bool:
    """True for names usable as a database (what ``/import?name=`` and ``create`` accept)."""
    try:
        db, kind = parse_filename(name)
    except InvalidNameError:
        return False
    return kind is FileKind.DATABASE and bool(db)
