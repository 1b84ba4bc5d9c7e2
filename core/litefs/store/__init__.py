"""The store: databases, positions, LTX files, commits, recovery (no FUSE, no sockets)."""

from litefs.store.database import (
    CommitError,
    CommitResult,
    Database,
    HaltForwardError,
    ReadOnlyError,
    RecoveryError,
    StoreError,
    VerifyError,
)
from litefs.store.names import FileKind, InvalidNameError, filename, parse_filename
from litefs.store.store import Store, Subscriber

__all__ = [
    "CommitError",
    "CommitResult",
    "Database",
    "HaltForwardError",
    "FileKind",
    "InvalidNameError",
    "ReadOnlyError",
    "RecoveryError",
    "Store",
    "StoreError",
    "Subscriber",
    "VerifyError",
    "filename",
    "parse_filename",
]
