"""Whether `megalodoc serve` can listen where it was told, checked before the model loads: Gradio's own
message for either failure speaks of a port range and its launch() parameters, also when the address is
the problem."""

from __future__ import annotations

import errno
import socket


def listen_problem(host: str, port: int) -> str | None:
    """None when a server can bind `host`:`port` now; otherwise what is wrong, naming the option to change."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"--host {host}: not a name or address this machine can resolve ({exc.strerror})"
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"--port {port}: another program listens on {host}:{port}; choose another port"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"--host {host}: not an address of this machine ({exc.strerror}); use 127.0.0.1 or 0.0.0.0"
            if exc.errno == errno.EACCES:
                return f"--port {port}: not allowed to listen there ({exc.strerror}); ports below 1024 need privileges"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None
