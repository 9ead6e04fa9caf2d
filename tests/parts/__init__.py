"""Small real servers and probes for the tests, one module per stand-in: a misbehaving HTTP proxy
in front of S3, a Slack webhook receiver, a ping receiver, nginx, redis, Chromium, a hung and a TLS
endpoint, a watcher of every process's command line, and data checks.

`from tests.parts import X` keeps working for every name."""

from __future__ import annotations

from tests.parts._server import _Server
from tests.parts.browser import Browser
from tests.parts.data import list_databases, table_checksums
from tests.parts.load import LoadGenerator
from tests.parts.nginx import NginxBalancer, _accepts, _PortTaken
from tests.parts.npm_audit import NpmAuditEndpoint, advisory
from tests.parts.pagerduty import PagerDutyReceiver
from tests.parts.pings import PingReceiver, _PingHandler
from tests.parts.prefect_api import flow_run_artifacts, flow_run_logs, flow_run_parameters
from tests.parts.processes import CommandLineWatcher, processes
from tests.parts.redis_server import RedisServer
from tests.parts.s3_proxy import FaultyProxy, _ProxyHandler
from tests.parts.silent import SilentServer
from tests.parts.slack import SlackReceiver, _SlackHandler
from tests.parts.smtp import SmtpReceiver
from tests.parts.tls import TlsServed, serve_tls_certificate

__all__ = [
    "Browser", "CommandLineWatcher", "FaultyProxy", "LoadGenerator", "NginxBalancer", "NpmAuditEndpoint", "PagerDutyReceiver", "PingReceiver", "RedisServer",
    "SilentServer", "SlackReceiver", "SmtpReceiver", "TlsServed", "_PingHandler", "_PortTaken", "_ProxyHandler", "_Server",
    "_SlackHandler", "_accepts", "advisory", "flow_run_artifacts", "flow_run_logs", "flow_run_parameters", "list_databases",
    "processes", "serve_tls_certificate", "table_checksums",
]
