"""The unit level's promise, enforced rather than hoped for: no network, no Redis, no model files.

Every test below tests/unit runs with INET sockets refused (a Redis client,
an HTTP call or a Hugging Face download fails the test at once) and with the
model cache pointed at an empty folder, so a test that quietly needs the
prepared models fails here instead of passing only on a developer's machine.
Such a test belongs in tests/integration.
"""

from __future__ import annotations

import socket

import pytest

_INET = (socket.AF_INET, socket.AF_INET6)


class NetworkUsed(AssertionError):
    """A unit test tried to reach a server."""


def _refuse(address) -> NetworkUsed:
    return NetworkUsed(f"unit tests may not connect to {address!r}; move the test to tests/integration")


@pytest.fixture(scope="session")
def empty_model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("no-models")


@pytest.fixture(autouse=True)
def unit_level_only(monkeypatch, empty_model_cache):
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(sock, address):
        if sock.family in _INET:
            raise _refuse(address)
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        if sock.family in _INET:
            raise _refuse(address)
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setenv("INFERQ_MODEL_CACHE", str(empty_model_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
