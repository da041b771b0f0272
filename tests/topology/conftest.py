"""Fixtures for tests that build real network topologies (root, iproute2, iptables)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tests.support import need_binary, need_root
from tests.topology.topology import Network, Topology

BuildNetwork = Callable[[Topology], Network]


def _need_topology_tools() -> None:
    need_root()
    for binary in ("ip", "iptables", "ss", "setpriv", "unshare"):
        need_binary(binary)


@pytest.fixture(scope="module")
def build_network() -> Iterator[BuildNetwork]:
    """Build topologies that live until the end of the test module, then are torn down.

    @pytest.fixture(scope="module")
    def net(build_network):
        topo = Topology()
        ...
        return build_network(topo)
    """
    _need_topology_tools()
    with contextlib.ExitStack() as stack:
        yield lambda topology: stack.enter_context(topology.build())


@pytest.fixture
def build_network_for_test() -> Iterator[BuildNetwork]:
    """Like ``build_network``, torn down at the end of each test."""
    _need_topology_tools()
    with contextlib.ExitStack() as stack:
        yield lambda topology: stack.enter_context(topology.build())
