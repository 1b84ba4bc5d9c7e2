"""The test helpers' port chooser stays out of the ephemeral range and never repeats a port."""

import socket

from litefs import testing_ports
from litefs.testing_ports import _ephemeral_low, free_ports


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(port < _ephemeral_low() for port in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_ports(1)[0]))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(testing_ports, "_next", taken)  # the chooser's next candidate is busy
        assert free_ports(1)[0] == taken + 1
