"""Serving the studio: uvicorn on a socket bound here (127.0.0.1 by default), stopped cleanly by Ctrl-C."""
from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from typing import Callable

from automix.errors import AutomixError

#: Port tried when none is given (0 = any free port).
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free one).

    Raises
    ------
    AutomixError
        The port is taken or not a port, or the address is not one of this machine's.
    """
    if not 0 <= int(port) <= 65535:
        raise AutomixError(f"port {port} is not between 0 and 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise AutomixError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                           "pass another --port (0 picks a free one)") from None
    sock.set_inheritable(True)
    return sock


def _can_open_browser() -> bool:
    """Whether a graphical browser can be opened (never a text browser in this terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def serve(session, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, open_browser: bool = False,
          announce: Callable[[str], None] = print, log: Callable[[str], None] | None = None) -> None:
    """Serve the studio for ``session`` until Ctrl-C (SIGINT) or SIGTERM; returns after a clean stop.

    ``announce`` receives the page's address once the socket listens (connections made from
    then on are answered as soon as the server runs); ``log`` a line per rendered preview.
    """
    import uvicorn

    from automix.studio.app import create_app

    sock = bind(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/"
    # on loopback only this machine's names are accepted (a page elsewhere cannot reach the studio
    # through a DNS name rebound to 127.0.0.1); on another address the user chose to be reachable
    allowed = ["127.0.0.1", "localhost", host] if is_loopback(host) else ["*"]
    app = create_app(session, allowed_hosts=allowed, log=log)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    announce(url)
    if open_browser and _can_open_browser():
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled once it has shut down
        pass
    finally:
        sock.close()
