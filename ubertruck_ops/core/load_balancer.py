"""The load-balancer step of a rolling deploy, decided without touching anything: the nginx
upstream file (rendered and read back), which ALB targets are a host's, and verdicts on the target
health the ALB reports.

A host is a name (the key of the block's `hosts` or of each upstream's servers). Taking the last
serving host out of the balancer is refused here, for both kinds: it would be an outage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

HEADER = ("# Managed by ubertruck-ops (the load-balancer step of the rolling deploy): every change here is\n"
          "# overwritten. Hosts marked `down` are out of the balancer.\n")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")
_DIRECTIVE = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .=:/-]*$")
_LINE = re.compile(r"^\s*server\s+(\S+?)(\s+[^;#]*)?;")


class LastServingHost(ValueError):
    """Taking this host out would leave an upstream or the target group with nothing serving."""


def check_name(value: str, what: str) -> str:
    """Return `value` when it is a plain name (letters, digits, `_.-`). Raise ValueError otherwise."""
    if not _NAME.match(value or ""):
        raise ValueError(f"{what} {value!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def check_server(value: str, what: str = "upstream server") -> str:
    """Return `value` when it is `address:port` (port 1-65535). Raise ValueError otherwise."""
    if not _SERVER.match(value or "") or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"{what} {value!r} must be address:port")
    return value


def check_directive(value: str) -> str:
    """Return an upstream directive (`keepalive 32`, `least_conn`) without its `;`. Raise ValueError
    on anything that could end the block or start another one."""
    text = value.strip().removesuffix(";").strip()
    if not _DIRECTIVE.match(text) or text.split()[0] == "server":
        raise ValueError(f"upstream directive {value!r} is refused: one directive, no ';', braces, '#' or server")
    return text


# ---- nginx -------------------------------------------------------------------------------------

def host_names(upstreams: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Return every host named by the upstreams, in first-seen order."""
    seen: dict[str, None] = {}
    for servers in upstreams.values():
        seen.update(dict.fromkeys(servers))
    return list(seen)


def render_upstreams(upstreams: Mapping[str, Mapping[str, str]], down: Iterable[str],
                     directives: Sequence[str] = ()) -> str:
    """Given upstream name -> {host: address:port}, the hosts out of the balancer and extra
    directives for each upstream, return the include file's text.

    Raise LastServingHost when an upstream would have no server up; ValueError on a host in `down`
    that no upstream names, or on a malformed name, server or directive.
    """
    down = set(down)
    unknown = down - set(host_names(upstreams))
    if unknown:
        raise ValueError(f"no upstream names the host(s) {sorted(unknown)}")
    if not upstreams:
        raise ValueError("no upstream is configured")
    extra = [check_directive(d) for d in directives]
    parts = [HEADER]
    for name, servers in upstreams.items():
        check_name(name, "upstream name")
        if not servers:
            raise ValueError(f"upstream {name} has no server")
        serving = [h for h in servers if h not in down]
        if not serving:
            raise LastServingHost(f"refusing to take {sorted(down & set(servers))} out: upstream {name} would have "
                                  "no server left up")
        lines = [f"upstream {name} {{"] + [f"    {d};" for d in extra]
        for host, address in servers.items():
            check_name(host, "host name")
            check_server(address, f"server of host {host} in upstream {name}")
            lines.append(f"    server {address}{' down' if host in down else ''};  # {host}")
        parts.append("\n".join(lines) + "\n}\n")
    return "\n".join(parts)


def down_hosts(text: str, upstreams: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Given the include file's text and the configured upstreams, return the hosts marked down in
    it: a host with any of its servers marked `down` (matched by address within its upstream)."""
    current = None
    down: set[str] = set()
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        head = re.match(r"^upstream\s+(\S+)\s*\{", stripped)
        if head:
            current = head.group(1)
            continue
        if stripped.startswith("}"):
            current = None
            continue
        server = _LINE.match(stripped)
        if current in upstreams and server and "down" in (server.group(2) or "").split():
            down.update(h for h, address in upstreams[current].items() if address == server.group(1))
    return down


# ---- ALB ---------------------------------------------------------------------------------------

def alb_target(text: str) -> dict:
    """Given one target (`i-0abc`, `i-0abc:8080`, `10.0.1.11:3000`), return the boto3
    TargetDescription (Id, and Port when given). Raise ValueError on anything else."""
    ident, sep, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    if not ident or (sep and not port.isdigit()) or (port and not 0 < int(port) < 65536):
        raise ValueError(f"target {text!r} must be an instance id or IP address, with an optional :port")
    return {"Id": ident, "Port": int(port)} if port else {"Id": ident}


def alb_targets(text: str) -> list[dict]:
    """Given a host's targets (`i-0abc` or `i-0abc:3001+i-0abc:3002`), return TargetDescriptions."""
    targets = [alb_target(part) for part in text.split("+") if part.strip()]
    if not targets:
        raise ValueError("a host names no target")
    return targets


@dataclass(frozen=True)
class TargetHealth:
    """One target as describe_target_health reports it."""

    id: str
    port: int | None
    state: str
    reason: str = ""

    def matches(self, target: Mapping) -> bool:
        return self.id == target["Id"] and ("Port" not in target or self.port == target["Port"])


def of_host(health: Sequence[TargetHealth], targets: Sequence[Mapping]) -> list[TargetHealth]:
    """Return the entries of `health` that are one of `targets`."""
    return [h for h in health if any(h.matches(t) for t in targets)]


def refuse_last_target(health: Sequence[TargetHealth], targets: Sequence[Mapping]) -> None:
    """Given every registered target's health and a host's targets, raise LastServingHost when no
    other target is healthy (taking the host out would leave the group serving nothing)."""
    others = [h for h in health if not any(h.matches(t) for t in targets)]
    if not any(h.state == "healthy" for h in others):
        raise LastServingHost("refusing to take the host out: no other target of the group is healthy "
                              f"({', '.join(f'{h.id}:{h.port} {h.state}' for h in others) or 'no other target'})")


# Verdicts: "done", "wait" (poll again) or "failed" (stop waiting: it will not get there).
def deregistered_verdict(health: Sequence[TargetHealth]) -> tuple[str, str]:
    """Given the health of a host's targets after deregistration, return (verdict, why): done once
    every one is `unused` (not registered) or not reported at all; wait while any drains."""
    busy = [h for h in health if h.state != "unused"]
    if not busy:
        return "done", "every target is deregistered"
    return "wait", ", ".join(f"{h.id}:{h.port} {h.state}" for h in busy)


def healthy_verdict(health: Sequence[TargetHealth], expected: int) -> tuple[str, str]:
    """Given the health of a host's `expected` targets after registration, return (verdict, why):
    done when every one is healthy (or `unavailable` because the group's health checks are off);
    failed when a target is in a state it cannot leave by itself (a stopped instance); else wait."""
    if any(h.reason == "Target.InvalidState" for h in health):
        bad = [h for h in health if h.reason == "Target.InvalidState"]
        return "failed", ", ".join(f"{h.id}:{h.port} {h.state} ({h.reason})" for h in bad)
    ready = [h for h in health if h.state == "healthy"
             or (h.state == "unavailable" and h.reason == "Target.HealthCheckDisabled")]
    if len(ready) >= expected and len(ready) == len(health):
        return "done", "every target is healthy"
    pending = [h for h in health if h not in ready]
    return "wait", ", ".join(f"{h.id}:{h.port} {h.state}{f' ({h.reason})' if h.reason else ''}" for h in pending) \
        or "targets not reported yet"


def host_states(hosts: Mapping[str, Sequence[Mapping]], health: Sequence[TargetHealth]) -> dict[str, str]:
    """Given host -> its targets and every registered target's health, return host -> `in` (every
    target healthy), `out` (none registered) or the states seen (`draining`, `initial`, ...)."""
    result = {}
    for host, targets in hosts.items():
        mine = of_host(health, targets)
        if not mine or all(h.state == "unused" for h in mine):
            result[host] = "out"
        elif healthy_verdict(mine, len(targets))[0] == "done":
            result[host] = "in"
        else:
            result[host] = "+".join(sorted({h.state for h in mine}))
    return result
