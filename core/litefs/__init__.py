"""litefs-py: LiteFS rebuilt in Python.

A FUSE file system under SQLite that turns every committed transaction into an LTX file and streams
it from the primary node to read-only replicas. The core does FUSE interception and LTX
replication; everything else (leases, proxy, exec supervisor, metrics, backups) is a plugin found
through the ``litefs`` entry-point group and described in :mod:`litefs.hookspecs`.
"""

__version__ = "0.1.0"
