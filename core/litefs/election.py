"""The election loop: one state machine, identical for every lease backend (LiteFS §6.3).

:class:`Election` drives a :class:`~litefs.lease.Leaser` and tells an :class:`ElectionHost` (the
node) which role to play:

* no primary and this node is a candidate -> ``acquire()``; on success the node becomes primary and
  the lease is renewed every TTL/2 (at most every 5 s);
* another node is primary -> the host follows it (replicates) until the stream ends; a handoff
  received on that stream makes this node take the lease over with ``acquire_existing()``;
* a non-candidate with no primary waits and asks again after ``lease.reconnect-delay``.

Safety: the node must stop accepting writes before any other node can acquire the lease. The lease
is valid for TTL counted from the moment the renew request was *sent* (the server starts its clock
later, so this is conservative); :meth:`Election.writable` turns false at that deadline even if the
renew loop never got to run (a process paused with SIGSTOP and resumed checks the deadline on its
next write), and :meth:`ElectionHost.on_not_primary` is called as soon as the loop notices.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from litefs.lease import (
    Lease,
    LeaseError,
    LeaseExpiredError,
    Leaser,
    NoPrimaryError,
    PrimaryExistsError,
    PrimaryInfo,
)

log = logging.getLogger("litefs.election")

#: How often a failed renewal is retried while the lease may still be valid.
RENEW_RETRY_INTERVAL = 1.0
#: How long a release may take at shutdown or demotion before it is abandoned.
RELEASE_TIMEOUT = 2.0
#: Longest time between renewals, whatever the TTL: a lease with a huge TTL (the static one) is
#: still renewed, so lease metrics show the loop alive, and a lost lease is noticed soon.
MAX_RENEW_INTERVAL = 5.0


@dataclass(frozen=True)
class ElectionSettings:
    candidate: bool = True
    reconnect_delay: float = 1.0
    demote_delay: float = 10.0


class ElectionHost(Protocol):
    """What the election needs from the node."""

    def local_cluster_id(self) -> str: ...

    def adopt_cluster_id(self, cluster_id: str) -> None:
        """Persist the cluster ID (the first primary of a cluster creates it)."""
        ...

    def new_cluster_id(self) -> str: ...

    def on_primary(self, info: PrimaryInfo) -> None:
        """This node now holds the lease: accept writes (while :meth:`Election.writable`)."""
        ...

    def on_not_primary(self, info: PrimaryInfo | None) -> None:
        """This node does not hold the lease (``info`` = the primary, if known): refuse writes."""
        ...

    async def recover(self, why: str) -> None:
        """Bring every database's files back to its position (LiteFS ``Store.Recover``).

        Called after every role change while the node accepts no writes: on becoming primary
        (lease held and renewed, before :meth:`on_primary`) and after leaving the primary role
        (after :meth:`on_not_primary`, before following the new primary).
        """
        ...

    async def follow(self, info: PrimaryInfo) -> str | None:
        """Replicate from the primary until the stream ends; return a handed-off lease ID, if any."""
        ...


class Election:
    """Runs the election for one node; ``await election.run()`` inside the node's nursery."""

    def __init__(
        self,
        leaser: Leaser,
        host: ElectionHost,
        settings: ElectionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_renew: Callable[[float, bool, str], None] | None = None,
    ) -> None:
        self.leaser = leaser
        self.host = host
        self.settings = settings
        self._clock = clock
        #: ``on_renew(seconds, ok, error)`` after every renewal attempt (lease metrics).
        self._on_renew = on_renew
        self.lease: Lease | None = None
        self.deadline = -math.inf
        """Monotonic time until which this node may write (``-inf`` when not primary)."""
        self._demote = trio.Event()
        self._handed_off = False
        self._handoff_lease_id: str | None = None
        self._wake = trio.Event()

    # -- queries and requests ----------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self.lease is not None

    def writable(self) -> bool:
        """True while this node holds a lease that cannot have expired yet."""
        return self.lease is not None and self._clock() < self.deadline

    def wake(self) -> None:
        """The lease changed (a backend's watch): end the current retry pause now."""
        self._wake.set()

    def demote(self) -> None:
        """Give the lease up (if held) and stay out of the election for ``demote-delay``."""
        self._demote.set()

    async def handoff(self, node_id: int, deliver: Callable[[str], None]) -> None:
        """Pass the held lease to ``node_id`` without releasing it (LiteFS §6.4).

        Writes stop at once; ``deliver(lease_id)`` must get the ID to that node (the primary's
        stream sends it in a HANDOFF frame), which then takes the lease over with
        ``acquire_existing``. Raises :class:`LeaseError` when not primary or when the backend
        cannot hand off (the static lease).
        """
        lease = self.lease
        if lease is None:
            raise LeaseError("cannot handoff: node is not currently primary")
        await lease.handoff(node_id)
        self.deadline = -math.inf  # no more writes here, from this instant
        self._handed_off = True
        deliver(lease.id)
        self._demote.set()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                retry_now = await self._round()
            except LeaseError as exc:
                log.warning("lease: %s", exc)
                retry_now = False
            if not retry_now:
                with trio.move_on_after(self.settings.reconnect_delay):
                    await self._wake.wait()
            self._wake = trio.Event()

    async def _round(self) -> bool:
        """One pass of the loop; True means "go round again at once" (lost a race)."""
        lease_cluster_id = await self.leaser.cluster_id()
        local_cluster_id = self.host.local_cluster_id()
        if lease_cluster_id and local_cluster_id and lease_cluster_id != local_cluster_id:
            log.error(
                "cluster id mismatch: lease has %s, this node has %s; not joining",
                lease_cluster_id,
                local_cluster_id,
            )
            return False

        if self._handoff_lease_id is not None:
            lease_id, self._handoff_lease_id = self._handoff_lease_id, None
            sent_at = self._clock()
            lease = await self.leaser.acquire_existing(lease_id)
            log.info("took over the primary lease by handoff")
            await self._hold(lease, sent_at, lease_cluster_id)
            return True

        try:
            info: PrimaryInfo | None = await self.leaser.primary_info()
        except NoPrimaryError:
            info = None

        if info is None:
            if not self.settings.candidate:
                log.info("cannot find primary & ineligible to become primary, retrying")
                self.host.on_not_primary(None)
                return False
            if lease_cluster_id and not local_cluster_id:
                # A node without a cluster ID may only join an existing cluster as a replica.
                log.info("lease belongs to cluster %s; waiting for its primary", lease_cluster_id)
                return False
            sent_at = self._clock()
            try:
                lease = await self.leaser.acquire()
            except PrimaryExistsError:
                return True  # another node won the race: look it up
            await self._hold(lease, sent_at, lease_cluster_id)
            return True

        self.host.on_not_primary(info)
        lease_id = await self.host.follow(info)
        if lease_id:
            self._handoff_lease_id = lease_id
            return True
        return False

    async def _hold(self, lease: Lease, sent_at: float, lease_cluster_id: str) -> None:
        """Be primary until the lease is lost, demoted or the node shuts down."""
        self.lease = lease
        self.deadline = sent_at + lease.ttl
        release = True
        try:
            if not lease_cluster_id:
                cluster_id = self.host.local_cluster_id() or self.host.new_cluster_id()
                await self.leaser.set_cluster_id(cluster_id)
                self.host.adopt_cluster_id(cluster_id)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._renew_loop, lease, nursery.cancel_scope)
                nursery.start_soon(self._watch_deadline, nursery.cancel_scope)
                nursery.start_soon(self._wait_demote, nursery.cancel_scope)
                # Recovery may take a while on a large database: the lease is renewed meanwhile,
                # and writes are accepted only once it is done.
                await self.host.recover("becoming primary")
                self.host.on_primary(PrimaryInfo(self.leaser.hostname, self.leaser.advertise_url))
            release = self._demote.is_set()
            if not release:
                log.warning("primary lease lost; this node stopped accepting writes")
        finally:
            self.lease = None
            self.deadline = -math.inf
            self.host.on_not_primary(None)
            if release:
                with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
                    try:
                        await lease.close()
                    except LeaseError as exc:
                        log.warning("releasing the lease: %s", exc)
        # Not reached when the node shuts down (cancelled): startup recovery handles that.
        await self.host.recover("leaving the primary role")
        if self._demote.is_set():
            self._demote = trio.Event()
            if self._handed_off:
                # The lease now belongs to the new primary (closing a handed-off lease is a no-op);
                # follow it at once.
                self._handed_off = False
                log.info("lease handed off")
                return
            log.info("demoted; staying out of the election for %.1fs", self.settings.demote_delay)
            await trio.sleep(self.settings.demote_delay)

    async def _renew_loop(self, lease: Lease, scope: trio.CancelScope) -> None:
        interval = min(lease.ttl / 2, MAX_RENEW_INTERVAL)
        next_renew = self._clock() + interval
        while True:
            await trio.sleep_until(_trio_time(next_renew, self._clock))
            sent_at = self._clock()
            try:
                await lease.renew()
            except LeaseExpiredError as exc:
                self._renewed(sent_at, False, str(exc) or "lease expired")
                scope.cancel()
                return
            except LeaseError as exc:
                self._renewed(sent_at, False, str(exc) or type(exc).__name__)
                log.warning("lease renewal failed, retrying: %s", exc)
                next_renew = self._clock() + RENEW_RETRY_INTERVAL
                continue
            self._renewed(sent_at, True, "")
            self.deadline = sent_at + lease.ttl
            next_renew = sent_at + interval

    def _renewed(self, sent_at: float, ok: bool, error: str) -> None:
        if self._on_renew is not None:
            try:
                self._on_renew(max(0.0, self._clock() - sent_at), ok, error)
            except Exception:  # reporting must never stop renewals
                log.exception("lease renewal listener failed")

    async def _watch_deadline(self, scope: trio.CancelScope) -> None:
        while self._clock() < self.deadline:
            await trio.sleep_until(_trio_time(self.deadline, self._clock))
        scope.cancel()

    async def _wait_demote(self, scope: trio.CancelScope) -> None:
        await self._demote.wait()
        scope.cancel()


def _trio_time(when: float, clock: Callable[[], float]) -> float:
    """Convert a time on ``clock`` to trio's clock (they differ under a mock clock)."""
    return trio.current_time() + max(0.0, when - clock())


__all__ = ["Election", "ElectionHost", "ElectionSettings"]
