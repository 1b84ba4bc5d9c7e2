"""The single exception type of the LTX codec."""

from __future__ import annotations


class LTXError(ValueError):
    """Malformed or inconsistent LTX data, or a call that would produce it.

    Raised for every bad input the ``litefs.ltx`` package sees: a corrupt or truncated file, a header that
    breaks a validation rule, pages out of order, a checksum mismatch, an unparsable name or position. The
    message names the culprit (field, byte offset, page number or file name). It subclasses ``ValueError``
    so generic callers that treat bad values uniformly still catch it.
    """
