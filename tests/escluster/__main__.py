"""``python -m tests.escluster --host 127.0.0.1 --port PORT [--license basic|trial] [--api-key KEY]``.

Prints ``listening on http://HOST:PORT`` once the socket accepts connections, then serves until
SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import make_server
from .state import LICENSE_TYPES, Cluster


def main(argv: list[str] | None = None) -> int:
    """Parse options, start the server, block until a signal arrives. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.escluster", description="An Elasticsearch 9.x compatible test cluster."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200, help="0 picks a free port")
    parser.add_argument("--license", default="trial", choices=LICENSE_TYPES)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: ApiKey KEY'")
    parser.add_argument("--password", default=None, help="also accept basic auth elastic:PASSWORD")
    parser.add_argument("--version", default="9.2.0", help="version GET / reports")
    parser.add_argument("--ml-nodes", type=int, default=1)
    parser.add_argument("--ml-memory-bytes", type=int, default=4 * 1024**3)
    args = parser.parse_args(argv)

    cluster = Cluster(
        license=args.license,
        version=args.version,
        ml_nodes=args.ml_nodes,
        ml_memory_bytes=args.ml_memory_bytes,
    )
    try:
        server = make_server(cluster, args.host, args.port, api_key=args.api_key, password=args.password)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    # The socket is bound and listening since make_server returned; connections queue until served.
    print(f"listening on http://{host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
