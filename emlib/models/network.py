"""Is the network usable, and was a failure the network's: probes with a deadline, proxies as the environment sets them.

:func:`probe` answers whether an endpoint (or the proxy in front of it) answers within a timeout,
to connect and again to answer, so that a proxy or a server that accepts a connection and never
answers reads as offline in seconds instead of hanging the first download.
:func:`network_failure` finds the network error (timeout, refused or dropped connection, proxy)
behind an exception of ``huggingface_hub``'s HTTP client. :mod:`emlib.models.hub` uses both.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import urllib.request
from urllib.parse import urlparse

__all__ = ["probe", "proxy_for", "proxy_variable", "network_failure"]


def proxy_for(endpoint: str) -> str:
    """The proxy URL requests to ``endpoint`` go through (as the environment sets it), or ``''``."""
    url = urlparse(endpoint)
    if url.hostname and urllib.request.proxy_bypass(url.hostname):
        return ""
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme or "https") or proxies.get("all") or ""


def proxy_variable(scheme: str) -> str:
    """The environment variable that set the proxy of ``scheme`` (for messages)."""
    names = [f"{scheme.upper()}_PROXY", f"{scheme}_proxy", "ALL_PROXY", "all_proxy"]
    return next((name for name in names if os.environ.get(name)), names[0])


def _answered(sock: socket.socket, host: str, port: int, *, scheme: str, proxied: bool) -> None:
    """Wait for the first answer on ``sock`` (raises ``OSError``, ``socket.timeout`` included, when none comes)."""
    if proxied:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    elif scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # reachability only: no data is exchanged
        context.wrap_socket(sock, server_hostname=host).close()
        return
    else:
        sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    if not sock.recv(1):
        raise ConnectionResetError("the connection was closed without an answer")


def probe(endpoint: str, proxy: str = "", *, timeout: float) -> str | None:
    """Why ``endpoint`` cannot be used now (a clause for a sentence), or None when it answers.

    Parameters
    ----------
    endpoint : str
        ``https://host[:port]`` or ``http://host[:port]``.
    proxy : str, default=''
        The proxy in front of it (:func:`proxy_for`); it must answer a ``CONNECT`` to the endpoint
        (a SOCKS proxy: connecting is all that is checked).
    timeout : float
        Seconds to connect, and again to get a first answer (a TLS handshake for ``https``, the
        status line of ``HEAD /`` for ``http``). Name resolution runs in a thread, since it ignores
        socket timeouts, so the answer comes within ``2 * timeout + 0.5`` seconds whatever happens.
    """
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    target, where = (host, port), host
    if proxy:
        via = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        target = (via.hostname or "", via.port or (443 if via.scheme == "https" else 1080 if via.scheme.startswith("socks") else 80))
        where = f"the proxy {target[0]}:{target[1]} set in {proxy_variable(url.scheme or 'https')}"
    outcome: list[BaseException | None] = []
    stage = ["connect"]

    def attempt() -> None:
        try:
            with socket.create_connection(target, timeout=timeout) as sock:
                stage[0] = "answer"
                if not (proxy and urlparse(proxy).scheme.startswith("socks")):  # a SOCKS proxy: connecting is all we check
                    _answered(sock, host, port, scheme=url.scheme, proxied=bool(proxy))
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    start = time.monotonic()
    thread = threading.Thread(target=attempt, daemon=True)  # name resolution ignores socket timeouts
    thread.start()
    thread.join(timeout + 0.5)
    if not outcome and stage[0] == "answer":
        thread.join(max(0.0, 2 * timeout + 0.5 - (time.monotonic() - start)))
    if not outcome or isinstance(outcome[0], TimeoutError):
        if stage[0] == "answer":
            return f"{where} accepted a connection but did not answer within {timeout:g} s"
        return f"{where} did not answer within {timeout:g} s"
    if outcome[0] is None:
        return None
    return f"{where} cannot be reached" if stage[0] == "connect" else f"{where} closed the connection without answering"


def network_failure(err: BaseException) -> BaseException | None:
    """The network error (timeout, refused or dropped connection, proxy) behind ``err``, or None."""
    import httpx2  # huggingface_hub's HTTP client

    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, (httpx2.TransportError, TimeoutError, ConnectionError, socket.gaierror)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
