"""The load balancer in front of an environment's app hosts: an AWS ALB target group, or nginx
upstreams on a load-balancer host, and each host's targets in it (issue 14)."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, field_validator, model_validator

from ubertruck_ops.blocks.aws import region_of
from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass
from ubertruck_ops.core.load_balancer import alb_targets, check_directive, check_name, check_server, host_names

DEFAULT_UPSTREAMS_FILE = "/etc/nginx/conf.d/ubertruck-upstreams.conf"


class LoadBalancer(SchemaOncePerClass, Block):
    """How a rolling deploy takes an app host out of the balancer and puts it back: an ALB target
    group (deregister, wait for deregistration, register, wait healthy) or nginx upstreams (mark the
    host's servers down, test, reload, wait for the old workers to drain)."""

    _block_type_name = "Ubertruck Load Balancer"
    _block_type_slug = "ubertruck-load-balancer"
    _description = ("The load balancer in front of the app hosts (ALB target group or nginx upstreams) and each "
                    "host's targets in it; the rolling deploy takes one host out at a time.")

    kind: Literal["alb", "nginx"] = Field(default="nginx", title="Kind",
                                          description="alb: an AWS ALB target group; nginx: upstreams in an include "
                                                      "file on the load-balancer host (LB_KIND).")
    poll_seconds: float = Field(default=2, gt=0, title="Poll interval (s)",
                                description="How often target health or nginx's workers are read while waiting.")
    # ALB
    target_group_arn: str | None = Field(default=None, title="Target group ARN",
                                         description="The ALB target group of the app hosts (LB_TARGET_GROUP_ARN).")
    hosts: dict[str, str] = Field(default_factory=dict, title="ALB targets per host",
                                  description="Host name -> its target: instance id or IP, optional :port, several "
                                              "joined by '+' (LB_HOSTS).")
    aws: AwsCredentials = Field(default_factory=AwsCredentials, title="AWS",
                                description="Region, keys and endpoint override (ELB_ENDPOINT_URL) of the ELBv2 API.")
    deregistration_timeout_seconds: float = Field(default=600, gt=0, title="Deregistration wait (s)",
                                                  description="Longest wait for a host's targets to finish draining; "
                                                              "keep above the group's deregistration delay (300 s by "
                                                              "default).")
    healthy_timeout_seconds: float = Field(default=300, gt=0, title="Healthy wait (s)",
                                           description="Longest wait for registered targets to pass the ALB's "
                                                       "health checks.")
    check_urls: list[str] = Field(default_factory=list, title="Check URLs through the balancer",
                                  description="After a host is back in, each must answer 2xx through the balancer "
                                              "(LB_CHECK_URLS, comma-separated), e.g. https://ubertruck.in/health.")
    check_timeout_seconds: float = Field(default=30, gt=0, title="Check through the balancer within (s)",
                                         description="How long the URLs may take to answer 2xx after a put-back.")
    # nginx
    upstreams_file: str = Field(default=DEFAULT_UPSTREAMS_FILE, title="Upstreams file",
                                description="The include file the project owns and rewrites "
                                            "(LB_NGINX_UPSTREAMS_FILE); nginx.conf includes it inside http {}.")
    upstreams: dict[str, dict[str, str]] = Field(default_factory=dict, title="Upstreams",
                                                 description="Upstream name -> {host name: address:port}; by "
                                                             "default one upstream per service (APP_SERVICES) with "
                                                             "every LB_HOSTS host at the service's port.")
    upstream_directives: list[str] = Field(default_factory=list, title="Upstream directives",
                                           description="Written into every upstream, e.g. 'keepalive 32', "
                                                       "'least_conn'.")
    reload_command: list[str] = Field(default_factory=lambda: ["nginx", "-s", "reload"], title="Reload argv",
                                      description="Run after the file changes (LB_NGINX_RELOAD_COMMAND), e.g. "
                                                  "sudo systemctl reload nginx; argv, no shell.")
    test_command: list[str] = Field(default_factory=lambda: ["nginx", "-t", "-q"], title="Config test argv",
                                    description="Run before a reload; a failure puts the previous file back "
                                                "(LB_NGINX_TEST_COMMAND; empty: no test).")
    pid_file: str | None = Field(default="/run/nginx.pid", title="nginx pid file",
                                 description="The master's pid file: drain waits for the workers from before the "
                                             "reload to exit (LB_NGINX_PID_FILE; empty: drain_seconds only).")
    drain_seconds: float = Field(default=5, ge=0, title="Drain time (s)",
                                 description="Least time waited after a reload before a host counts as out "
                                             "(LB_DRAIN_SECONDS).")
    drain_timeout_seconds: float = Field(default=120, gt=0, title="Drain timeout (s)",
                                         description="Longest wait for the old workers' connections to end; keep "
                                                     "near nginx's worker_shutdown_timeout (LB_DRAIN_TIMEOUT).")

    @field_validator("hosts")
    @classmethod
    def _valid_hosts(cls, value: dict[str, str]) -> dict[str, str]:
        for host, target in value.items():
            check_name(host, "host name")
            alb_targets(target)
        return value

    @field_validator("upstreams")
    @classmethod
    def _valid_upstreams(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, servers in value.items():
            check_name(name, "upstream name")
            for host, address in servers.items():
                check_name(host, "host name")
                check_server(address, f"server of host {host} in upstream {name}")
        return value

    @field_validator("check_urls")
    @classmethod
    def _valid_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
                raise ValueError(f"check URL {url!r} must be an http:// or https:// URL")
        return value

    @field_validator("upstream_directives")
    @classmethod
    def _valid_directives(cls, value: list[str]) -> list[str]:
        return [check_directive(d) for d in value]

    @model_validator(mode="after")
    def _complete(self) -> LoadBalancer:
        if self.kind == "alb" and self.hosts and not self.target_group_arn:
            raise ValueError("an ALB load balancer needs LB_TARGET_GROUP_ARN")
        if self.kind == "nginx" and self.upstreams and not self.reload_command:
            raise ValueError("an nginx load balancer needs a reload command (LB_NGINX_RELOAD_COMMAND)")
        return self

    @property
    def region(self) -> str:
        return region_of(self.aws)

    @property
    def host_names(self) -> list[str]:
        """Every host behind the balancer, in configured order."""
        return list(self.hosts) if self.kind == "alb" else host_names(self.upstreams)

    def targets_of(self, host: str) -> list:
        """Return a host's targets: ALB TargetDescriptions, or nginx `upstream=address:port` strings.
        Raise ValueError for a host the balancer does not know."""
        if host not in self.host_names:
            raise ValueError(f"host {host!r} is not behind the load balancer (known: {', '.join(self.host_names)})")
        if self.kind == "alb":
            return alb_targets(self.hosts[host])
        return [f"{name}={servers[host]}" for name, servers in self.upstreams.items() if host in servers]
