"""A real S3 server on 127.0.0.1 for the tests and the benchmarks: moto's, in a thread.

It needs ``moto[server]`` (a dev dependency, not a runtime one), which is why it lives here
and not in ``metaxy_core.testing``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def local_s3_server() -> Iterator[str]:
    """Serve S3 over HTTP on 127.0.0.1 (a free port) in a thread of this process; yield the
    endpoint.

    moto checks ``If-None-Match: *`` and stores the object in two steps, so two threads of its
    server could both create one key, and two Delta commits of one version would both
    succeed, the later overwriting the earlier. Conditional PUTs are served one at a time
    here, as S3 does them atomically.
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    app = _AtomicConditionalPuts(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


class _AtomicConditionalPuts:
    """A WSGI app serving the PUTs with ``If-None-Match`` of ``app`` one at a time."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "PUT" and environ.get("HTTP_IF_NONE_MATCH"):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)
