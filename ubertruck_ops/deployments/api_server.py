"""The process of every Prefect API server this project starts (`serve`'s and the private API of
`run`): `python -m ubertruck_ops.deployments.api_server --fd FD --host HOST --port PORT`.

The parent binds the listening socket and hands it over as FD (HOST and PORT say where, for `ps`),
keeping its own copy for as long as it runs: the address is ours before the server has loaded, and
stays ours if the server dies, so no other local user can take the port in between and collect the
auth string our clients send to it (docs/operations.md, "How our clients know they talk to our server"). What runs is what `prefect server start`
runs - Prefect's app under uvicorn in this process - configured by the environment the parent gives
(deployments/api.server_env; PREFECT__SERVER_EPHEMERAL=1 for the private API: no UI, no services).
"""

from __future__ import annotations

import argparse
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ubertruck_ops.deployments.api_server",
                                     description="Serve Prefect's API on a listening socket inherited from the parent.")
    parser.add_argument("--fd", type=int, required=True, help="the listening TCP socket")
    # Where it listens, for `ps` readers; checked against the socket itself.
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.fd)      # family and type read from the socket itself
    if listener.getsockname()[1] != args.port:
        parser.error(f"fd {args.fd} listens on port {listener.getsockname()[1]}, not {args.port}")
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    config = uvicorn.Config(create_app(final=True), lifespan="on",
                            timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
                            ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
                            ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
                            log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower())
    uvicorn.Server(config).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
