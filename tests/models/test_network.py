"""Tests of emlib.models.network: probes with a deadline (a server that accepts and never answers is offline),
proxies as the environment sets them, and the network error behind a download's failure."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emlib.models.network import network_failure, probe, proxy_for, proxy_variable


@pytest.fixture()
def no_proxy_env(monkeypatch):
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.fixture()
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield server.getsockname()[1]
    server.close()


class _Answers(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_server_that_answers_is_reachable(no_proxy_env):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert probe(f"http://127.0.0.1:{server.server_address[1]}", timeout=1.0) is None
    finally:
        server.shutdown()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_accepted_but_never_answered_is_a_reason_within_the_deadline(no_proxy_env, silent_port, scheme):
    start = time.monotonic()
    assert probe(f"{scheme}://127.0.0.1:{silent_port}", timeout=0.3) == (
        "127.0.0.1 accepted a connection but did not answer within 0.3 s")
    assert time.monotonic() - start < 2 * 0.3 + 0.6


def test_a_stalled_proxy_is_named_with_the_variable_that_set_it(no_proxy_env, silent_port):
    no_proxy_env.setenv("https_proxy", f"http://127.0.0.1:{silent_port}")
    assert proxy_for("https://huggingface.co") == f"http://127.0.0.1:{silent_port}"
    assert proxy_variable("https") == "https_proxy"
    assert probe("https://huggingface.co", proxy_for("https://huggingface.co"), timeout=0.3) == (
        f"the proxy 127.0.0.1:{silent_port} set in https_proxy accepted a connection but did not answer within 0.3 s")


def test_no_proxy_and_a_closed_port(no_proxy_env, silent_port):
    no_proxy_env.setenv("ALL_PROXY", f"http://127.0.0.1:{silent_port}")
    assert proxy_for("https://huggingface.co") == f"http://127.0.0.1:{silent_port}"
    no_proxy_env.setenv("NO_PROXY", "huggingface.co")
    assert proxy_for("https://huggingface.co") == ""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert probe(f"http://127.0.0.1:{port}", timeout=0.3) == "127.0.0.1 cannot be reached"


def test_network_failure_finds_the_cause_in_the_chain():
    import httpx2

    try:
        try:
            raise httpx2.ReadTimeout("timed out")
        except httpx2.ReadTimeout as inner:
            raise RuntimeError("An error happened while trying to locate the file on the Hub") from inner
    except RuntimeError as err:
        assert isinstance(network_failure(err), httpx2.ReadTimeout)
    assert network_failure(OSError(28, "No space left on device")) is None  # a full disk is not the network's
    assert isinstance(network_failure(ConnectionResetError("reset")), ConnectionResetError)
