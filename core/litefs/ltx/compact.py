"""Compaction of consecutive LTX files into one (ltx.md section 4.5, litefs.md section 5.1)."""

from __future__ import annotations

import heapq
from typing import BinaryIO

from litefs.ltx.decoder import Decoder
from litefs.ltx.encoder import Encoder
from litefs.ltx.errors import LTXError
from litefs.ltx.header import FLAG_COMPRESS_LZ4, Header


def compact(inputs: list[BinaryIO], output: BinaryIO, *, compress: bool) -> Header:
    """Merge LTX files covering consecutive TXID ranges into one file written to ``output``.

    The newest version of each page wins and pages past the last file's commit are dropped. The result
    takes min TXID and pre-apply checksum from the first input; max TXID, commit, timestamp and post-apply
    checksum from the last; WAL fields and node id are zero. Inputs are streamed (one page per input in
    memory). Raises ``LTXError`` if an input is invalid, the page sizes differ, or the inputs are not
    contiguous (TXIDs, and each post-apply checksum equal to the next pre-apply checksum). On error the
    output holds a partial file and must be discarded.
    """
    if not inputs:
        raise LTXError("compact: no input files")
    decoders = [Decoder(f) for f in inputs]
    headers = [d.header for d in decoders]
    first, last = headers[0], headers[-1]
    for i in range(1, len(headers)):
        prev, cur = headers[i - 1], headers[i]
        if cur.page_size != first.page_size:
            raise LTXError(f"compact: input {i} has page size {cur.page_size}, input 0 has {first.page_size}")
        if cur.min_txid != prev.max_txid + 1:
            raise LTXError(
                f"compact: inputs not contiguous: input {i - 1} ends at TXID {prev.max_txid:016x}, "
                f"input {i} starts at {cur.min_txid:016x}"
            )
    header = Header(
        flags=FLAG_COMPRESS_LZ4 if compress else 0,
        page_size=first.page_size,
        commit=last.commit,
        min_txid=first.min_txid,
        max_txid=last.max_txid,
        timestamp=last.timestamp,
        pre_apply_checksum=first.pre_apply_checksum,
    )
    enc = Encoder(output, header)
    iters = [d.pages() for d in decoders]
    # Heap of (pgno, -input index, data): for equal page numbers the newest input pops first.
    heap: list[tuple[int, int, bytes]] = []

    def advance(i: int) -> None:
        item = next(iters[i], None)
        if item is not None:
            heapq.heappush(heap, (item[0], -i, item[1]))

    for i in range(len(iters)):
        advance(i)
    while heap:
        pgno, neg_i, data = heapq.heappop(heap)
        advance(-neg_i)
        while heap and heap[0][0] == pgno:  # older versions of the same page
            advance(-heapq.heappop(heap)[1])
        if pgno <= header.commit:
            enc.encode_page(pgno, data)
    trailers = [d.trailer for d in decoders]
    assert all(t is not None for t in trailers)
    for i in range(1, len(headers)):
        if trailers[i - 1].post_apply_checksum != headers[i].pre_apply_checksum:
            raise LTXError(
                f"compact: inputs not contiguous: input {i - 1} post-apply checksum "
                f"{trailers[i - 1].post_apply_checksum:016x} != input {i} pre-apply checksum "
                f"{headers[i].pre_apply_checksum:016x}"
            )
    enc.finish(trailers[-1].post_apply_checksum)
    return header
