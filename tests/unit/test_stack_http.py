"""The stack's HTTP helper keeps one client per thread and survives a server restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stationflow.stack import components
from stationflow.stack.components import http_call
from stationflow.stack.ports import free_port


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client keeps the connection
    answered = 0  # requests answered on this connection
    one_per_connection = False  # drop a kept connection at its next request, as a restart does

    def do_GET(self) -> None:
        if self.one_per_connection and self.answered:
            self.close_connection = True  # gone without an answer: the client sees a disconnect
            return
        self.answered += 1
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@contextmanager
def _server(port: int, handler: type[BaseHTTPRequestHandler] = _Hello) -> Iterator[None]:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_one_client_per_thread_reused() -> None:
    port = free_port()
    with _server(port):
        url = f"http://127.0.0.1:{port}/"
        assert http_call("GET", url).text == "hello"
        first = components._http()
        assert http_call("GET", url).text == "hello"
        assert components._http() is first
        seen: list[object] = []
        other = threading.Thread(target=lambda: seen.append(components._http()))
        other.start()
        other.join()
        assert seen and seen[0] is not first


class _Restarting(_Hello):
    one_per_connection = True


def test_a_kept_connection_the_server_dropped_is_replaced() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with _server(port, _Restarting):
        assert http_call("GET", url).text == "hello"  # the connection is kept
        # the server drops it at the next request without answering (an InfluxDB that
        # restarted between two polls): the call is made again on a new connection
        assert http_call("GET", url).text == "hello"
        assert http_call("GET", url).text == "hello"
