"""Test ports: chosen where the kernel never hands them to another process's `bind(0)` or connection."""

from __future__ import annotations

import socket

from scripts.procs import _ephemeral_range, free_port, port_candidates


def test_candidates_skip_the_ephemeral_range_and_well_known_ports() -> None:
    candidates = port_candidates((32768, 60999))
    assert candidates[0] == 15000 and 32767 in candidates and 61000 in candidates
    assert not any(32768 <= port <= 60999 for port in candidates)
    assert max(candidates) == 65535 and min(candidates) >= 15000


def test_no_candidates_when_the_ephemeral_range_is_everything() -> None:
    assert port_candidates((1024, 65535)) == []


def test_free_ports_are_distinct_outside_the_range_and_bindable() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert not any(low <= port <= high for port in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_run_of_ports_is_consecutive_free_and_never_handed_out_again() -> None:
    low, high = _ephemeral_range()
    first = free_port(4)
    run = set(range(first, first + 4))
    assert not any(low <= port <= high for port in run)
    for port in run:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    assert not run & {free_port() for _ in range(200)}
