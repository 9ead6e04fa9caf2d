"""The load balancer in front of an environment's app hosts: an AWS ALB target group, or nginx
upstreams on a load-balancer host, and each host's targets in it (issue 14)."""

from __future__ import annotations

import shlex
from typing import Literal, Mapping

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import Field, SecretStr, field_validator, model_validator

from ubertruck_ops.blocks.app import DEFAULT_SERVICES, parse_services
from ubertruck_ops.core.load_balancer import alb_targets, check_directive, check_name, check_server, host_names

DEFAULT_UPSTREAMS_FILE = "/etc/nginx/conf.d/ubertruck-upstreams.conf"


class LoadBalancer(Block):
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
    def _complete(self) -> "LoadBalancer":
        if self.kind == "alb" and self.hosts and not self.target_group_arn:
            raise ValueError("an ALB load balancer needs LB_TARGET_GROUP_ARN")
        if self.kind == "nginx" and self.upstreams and not self.reload_command:
            raise ValueError("an nginx load balancer needs a reload command (LB_NGINX_RELOAD_COMMAND)")
        return self

    @property
    def region(self) -> str:
        return self.aws.region_name or "ap-south-1"

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


def _pairs(text: str, variable: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{variable} item {item!r} must be host=address")
        pairs[name.strip()] = value.strip()
    if not pairs:
        raise ValueError(f"{variable} names no host")
    return pairs


def load_balancer_from_variables(variables: Mapping[str, str]) -> LoadBalancer | None:
    """Given environment variables, return the load balancer they describe, or None without LB_KIND.

    LB_KIND=alb needs LB_TARGET_GROUP_ARN and LB_HOSTS (app-1=i-0abc,app-2=i-0def[:port]); region and
    keys are AWS_REGION/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ELB_ENDPOINT_URL overrides the
    endpoint. LB_KIND=nginx needs LB_HOSTS (app-1=10.0.1.11,...): one upstream per service of
    LB_NGINX_UPSTREAMS (name:port,...; default APP_SERVICES) holding every host at that port.
    LB_HOSTS's names are APP_HOSTS's when that is set.
    Raise ValueError naming the variable when one is missing or malformed.
    """
    def optional(name: str) -> str | None:
        return (variables.get(name) or "").strip() or None

    def need(name: str) -> str:
        value = optional(name)
        if not value:
            raise ValueError(f"environment variable {name} is required with LB_KIND={kind}")
        return value

    def seconds(name: str, field: str) -> dict:
        value = optional(name)
        if value is None:
            return {}
        try:
            return {field: float(value)}
        except ValueError:
            raise ValueError(f"environment variable {name} must be a number of seconds, not {value!r}") from None

    kind = (optional("LB_KIND") or "").lower()
    if not kind:
        return None
    checks = {"check_urls": [u.strip() for u in (optional("LB_CHECK_URLS") or "").split(",") if u.strip()],
              **seconds("LB_CHECK_TIMEOUT", "check_timeout_seconds")}
    if kind not in ("alb", "nginx"):
        raise ValueError(f"environment variable LB_KIND must be alb or nginx, not {kind!r}")
    hosts = _pairs(need("LB_HOSTS"), "LB_HOSTS")
    fleet = [h.strip() for h in (optional("APP_HOSTS") or "").split(",") if h.strip()]
    if fleet and set(fleet) != set(hosts):
        # A host of the fleet the balancer does not know could not be taken out; one it knows that the
        # fleet does not name would never be deployed while it keeps serving.
        raise ValueError(f"LB_HOSTS must name the hosts of APP_HOSTS, each once: missing "
                         f"{sorted(set(fleet) - set(hosts)) or 'none'}, not in APP_HOSTS "
                         f"{sorted(set(hosts) - set(fleet)) or 'none'}")
    try:
        if kind == "alb":
            secret = optional("AWS_SECRET_ACCESS_KEY")
            aws = AwsCredentials(aws_access_key_id=optional("AWS_ACCESS_KEY_ID"),
                                 aws_secret_access_key=SecretStr(secret) if secret else None,
                                 region_name=optional("AWS_REGION") or "ap-south-1",
                                 aws_client_parameters=AwsClientParameters(endpoint_url=optional("ELB_ENDPOINT_URL")))
            return LoadBalancer(kind="alb", target_group_arn=need("LB_TARGET_GROUP_ARN"), hosts=hosts, aws=aws,
                                **seconds("LB_DEREGISTRATION_TIMEOUT", "deregistration_timeout_seconds"),
                                **seconds("LB_HEALTHY_TIMEOUT", "healthy_timeout_seconds"), **checks)
        services = optional("LB_NGINX_UPSTREAMS") or optional("APP_SERVICES")
        ports = parse_services(services) if services else dict(DEFAULT_SERVICES)
        upstreams = {name: {host: f"{address}:{port}" for host, address in hosts.items()}
                     for name, port in ports.items()}
        extra: dict = {}
        if optional("LB_NGINX_RELOAD_COMMAND"):
            extra["reload_command"] = shlex.split(optional("LB_NGINX_RELOAD_COMMAND"))
        if "LB_NGINX_TEST_COMMAND" in variables:
            extra["test_command"] = shlex.split(variables["LB_NGINX_TEST_COMMAND"] or "")
        if "LB_NGINX_PID_FILE" in variables:
            extra["pid_file"] = optional("LB_NGINX_PID_FILE")
        return LoadBalancer(kind="nginx", upstreams=upstreams,
                            upstreams_file=optional("LB_NGINX_UPSTREAMS_FILE") or DEFAULT_UPSTREAMS_FILE,
                            **extra, **seconds("LB_DRAIN_SECONDS", "drain_seconds"),
                            **seconds("LB_DRAIN_TIMEOUT", "drain_timeout_seconds"), **checks)
    except ValueError as exc:
        raise ValueError(f"load balancer variables are refused: {exc}") from None
