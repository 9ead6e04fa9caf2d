"""The load-balancer step on real parts: an ALB target group on moto's ELBv2 server over HTTP, and
Debian's nginx in front of two local HTTP servers standing for two app hosts.

moto's ELBv2 answers target health without health checks or delays: a registered running instance
is `healthy` at once, a deregistered one `unused` (Target.NotRegistered) at once (no `draining`, no
`initial`), a stopped instance `unused` (Target.InvalidState), and registering a stopped instance
is refused. So these tests check order, idempotence and the refusals; the waiting verdicts for
`initial` and `draining` are unit-tested in tests/core/test_load_balancer.py.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import SecretStr

from ubertruck_ops.blocks.load_balancer import LoadBalancer
from ubertruck_ops.blocks.variables import load_balancer_from_variables
from ubertruck_ops.core.load_balancer import LastServingHost
from ubertruck_ops.tasks import execute
from ubertruck_ops.tasks.balancers import alb as alb_balancer
from ubertruck_ops.tasks.load_balancer import LoadBalancerError, check_through, deregister, register, state
from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import require
from tests.parts import NginxBalancer

REGION = "ap-south-1"
_IMAGE: dict[str, str] = {}


# ---- ALB on moto -------------------------------------------------------------------------------

@pytest.fixture
def alb(moto_server, monkeypatch):
    """A target group with two running instances registered, the block on it, and the ELBv2 calls
    the tasks make (operation, targets) in order."""
    kwargs = dict(endpoint_url=moto_server, aws_access_key_id="test", aws_secret_access_key="test",
                  region_name=REGION)
    ec2, elbv2 = boto3.client("ec2", **kwargs), boto3.client("elbv2", **kwargs)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    if "image" not in _IMAGE:     # listing moto's images takes a second: once per session
        _IMAGE["image"] = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    image = _IMAGE["image"]
    instances = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]]
    group = elbv2.create_target_group(Name=f"ubertruck-{free_port()}", Protocol="HTTP", Port=80, VpcId=vpc,
                                      TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": i} for i in instances])
    block = LoadBalancer(kind="alb", target_group_arn=group, hosts={"app-1": instances[0], "app-2": instances[1]},
                         aws=AwsCredentials(aws_access_key_id="test", aws_secret_access_key=SecretStr("test"),
                                            region_name=REGION,
                                            aws_client_parameters=AwsClientParameters(endpoint_url=moto_server)),
                         poll_seconds=0.05, deregistration_timeout_seconds=5, healthy_timeout_seconds=5)
    calls: list[tuple[str, list[str]]] = []
    real_client = alb_balancer.elbv2_client

    def recording_client(lb):
        client = real_client(lb)
        client.meta.events.register(
            f"provide-client-params.{client.meta.service_model.service_id.hyphenize()}",
            lambda params, model, **_: calls.append((model.name, [t["Id"] for t in params.get("Targets", [])])))
        return client

    monkeypatch.setattr(alb_balancer, "elbv2_client", recording_client)
    return block, instances, calls, elbv2


def _registered(elbv2, block) -> dict[str, str]:
    answer = elbv2.describe_target_health(TargetGroupArn=block.target_group_arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in answer}


def test_a_host_is_deregistered_then_registered_and_healthy_again_in_that_order(alb):
    block, (one, two), calls, elbv2 = alb
    out = deregister(block, "app-1")
    assert out["deregistered"] == [{"Id": one}] and out["health"][0]["state"] == "unused"
    assert _registered(elbv2, block) == {two: "healthy"}
    assert state(block)["hosts"] == {"app-1": "out", "app-2": "in"}
    back = register(block, "app-1")
    assert back["health"] == [{"id": one, "port": 80, "state": "healthy", "reason": ""}]
    assert _registered(elbv2, block) == {one: "healthy", two: "healthy"}
    changes = [c for c in calls if c[0] in ("DeregisterTargets", "RegisterTargets")]
    assert changes == [("DeregisterTargets", [one]), ("RegisterTargets", [one])]
    # deregister reads the group before it deregisters, and waits on the host's targets after
    assert calls[0] == ("DescribeTargetHealth", []) and calls[2] == ("DescribeTargetHealth", [one])


def test_a_failure_between_deregister_and_register_leaves_no_target_out(alb):
    block, (one, two), _, elbv2 = alb
    with pytest.raises(RuntimeError, match="hand-over failed"):
        deregister(block, "app-2")
        try:
            assert _registered(elbv2, block) == {one: "healthy"}
            raise RuntimeError("hand-over failed")
        finally:
            register(block, "app-2")      # the rolling deploy's recovery
    assert _registered(elbv2, block) == {one: "healthy", two: "healthy"}
    # register is idempotent: the recovery is safe when deregister never got as far as deregistering
    register(block, "app-2")
    assert _registered(elbv2, block) == {one: "healthy", two: "healthy"}


def test_the_last_healthy_target_is_never_deregistered(alb):
    block, (one, two), calls, elbv2 = alb
    deregister(block, "app-1")
    try:
        with pytest.raises(LastServingHost, match="no other target of the group is healthy"):
            deregister(block, "app-2")
        assert _registered(elbv2, block) == {two: "healthy"}
        assert [c for c in calls if c[0] == "DeregisterTargets"] == [("DeregisterTargets", [one])]
    finally:
        register(block, "app-1")


def test_the_alb_block_comes_from_the_variables():
    block = load_balancer_from_variables({
        "LB_KIND": "alb", "LB_TARGET_GROUP_ARN": "arn:aws:elasticloadbalancing:ap-south-1:1:targetgroup/u/1",
        "LB_HOSTS": "app-1=i-0abc, app-2=10.0.1.12:3000", "AWS_SECRET_ACCESS_KEY": "sentinel-secret",
        "ELB_ENDPOINT_URL": "http://127.0.0.1:9", "LB_DEREGISTRATION_TIMEOUT": "400",
        "LB_CHECK_URLS": "https://ubertruck.in/health, https://ubertruck.in/api/ping"})
    assert block.check_urls == ["https://ubertruck.in/health", "https://ubertruck.in/api/ping"]
    assert block.targets_of("app-2") == [{"Id": "10.0.1.12", "Port": 3000}]
    assert block.aws.aws_client_parameters.endpoint_url == "http://127.0.0.1:9"
    assert block.deregistration_timeout_seconds == 400 and "sentinel-secret" not in repr(block)
    assert load_balancer_from_variables({}) is None
    with pytest.raises(ValueError, match="LB_TARGET_GROUP_ARN"):
        load_balancer_from_variables({"LB_KIND": "alb", "LB_HOSTS": "app-1=i-0abc"})
    with pytest.raises(ValueError, match="LB_HOSTS"):
        load_balancer_from_variables({"LB_KIND": "nginx"})
    with pytest.raises(ValueError, match="must be an http"):
        load_balancer_from_variables({"LB_KIND": "nginx", "LB_HOSTS": "app-1=10.0.1.11",
                                      "LB_CHECK_URLS": "file:///etc/passwd"})
    with pytest.raises(ValueError, match=r"missing \['web-2'\], not in APP_HOSTS \['app-2'\]"):
        load_balancer_from_variables({"LB_KIND": "nginx", "APP_HOSTS": "web-1,web-2",
                                      "LB_HOSTS": "web-1=10.0.1.11,app-2=10.0.1.12"})


def test_the_nginx_block_has_an_upstream_per_service_with_every_host():
    block = load_balancer_from_variables({"LB_KIND": "nginx", "LB_HOSTS": "app-1=10.0.1.11,app-2=10.0.1.12",
                                          "APP_SERVICES": "user-service:3001,fleet-service:3002",
                                          "LB_NGINX_RELOAD_COMMAND": "sudo systemctl reload nginx",
                                          "LB_NGINX_TEST_COMMAND": "sudo nginx -t -q"})
    assert block.upstreams == {"user-service": {"app-1": "10.0.1.11:3001", "app-2": "10.0.1.12:3001"},
                               "fleet-service": {"app-1": "10.0.1.11:3002", "app-2": "10.0.1.12:3002"}}
    assert block.reload_command == ["sudo", "systemctl", "reload", "nginx"]
    assert block.targets_of("app-2") == ["user-service=10.0.1.12:3001", "fleet-service=10.0.1.12:3002"]


# ---- nginx -------------------------------------------------------------------------------------

class Backend:
    """A tiny HTTP server standing for one app host: counts the requests it answers; /slow takes 2.5 s."""

    def __init__(self, name: str):
        self.name, self.hits, self.lock = name, 0, threading.Lock()
        self.slow_started = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/slow":
                    backend.slow_started.set()
                    time.sleep(2.5)
                with backend.lock:
                    backend.hits += 1
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                """Keep the test output free of one line per request."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return self.hits


@pytest.fixture
def nginx(tmp_path):
    """Debian's nginx (as the test user, everything in a temp prefix) on 127.0.0.1:<free port>,
    balancing upstream `app` over two backends; yields (block, port, backends)."""
    backends = {"app-1": Backend("app-1"), "app-2": Backend("app-2")}
    try:
        balancer = NginxBalancer(tmp_path, {"app": {name: f"127.0.0.1:{b.port}" for name, b in backends.items()}})
    except RuntimeError as missing:
        require(False, str(missing))
    balancer.start()
    try:
        yield balancer.block, balancer.ports["app"], backends
    finally:
        balancer.stop()
        for b in backends.values():
            b.server.shutdown()
            b.server.server_close()


class Load:
    """One client sending requests through nginx without pause, a new connection each time."""

    def __init__(self, port: int):
        self.url, self.ok, self.failures = f"http://127.0.0.1:{port}/", 0, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    answer.read()
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append(repr(exc))

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)


def _hits_during(backends, seconds: float) -> dict[str, int]:
    before = {name: b.count() for name, b in backends.items()}
    time.sleep(seconds)
    return {name: b.count() - before[name] for name, b in backends.items()}


def test_nginx_serves_without_a_failure_while_a_host_is_out_and_only_the_other_host_answers(nginx):
    block, port, backends = nginx
    load = Load(port)
    try:
        assert all(hits > 0 for hits in _hits_during(backends, 0.4).values())
        slow: list = []
        request = threading.Thread(target=lambda: slow.append(
            (urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=10).read(), time.monotonic())))
        request.start()
        deadline = time.monotonic() + 5
        while not any(b.slow_started.is_set() for b in backends.values()):
            assert time.monotonic() < deadline, "the slow request never reached a backend"
            time.sleep(0.01)

        out = deregister(block, "app-2")
        returned = time.monotonic()
        # the old worker held the slow request: deregister waited until it was answered
        assert out["changed"] and out["old_workers"] and out["old_workers_exited_after"] > 0, out
        request.join(timeout=5)
        assert slow and slow[0][0] in (b"app-1", b"app-2") and slow[0][1] <= returned, (slow, returned, out)
        hits = _hits_during(backends, 0.5)
        assert hits["app-2"] == 0 and hits["app-1"] > 5, hits
        assert state(block)["hosts"] == {"app-1": "in", "app-2": "out"}

        with pytest.raises(LastServingHost, match="no server left up"):
            deregister(block, "app-1")
        assert f"127.0.0.1:{backends['app-2'].port} down;" in Path(block.upstreams_file).read_text()

        back = register(block, "app-2")
        assert back["changed"] and back["down"] == []
        time.sleep(0.3)      # the old workers finish what they hold; new requests go to both
        assert all(hits > 0 for hits in _hits_during(backends, 0.5).values())
        assert register(block, "app-2")["changed"] is False
    finally:
        load.stop()
    assert load.failures == [] and load.ok > 30, (load.ok, load.failures[:3])


def test_a_configuration_nginx_refuses_is_never_reloaded_and_the_file_is_put_back(nginx):
    block, port, backends = nginx
    before = Path(block.upstreams_file).read_text()
    broken = block.model_copy(update={"upstream_directives": ["no_such_directive 1"]})
    with pytest.raises(execute.CommandFailed, match="no_such_directive"):
        deregister(broken, "app-2")
    assert Path(block.upstreams_file).read_text() == before
    assert state(block)["hosts"] == {"app-1": "in", "app-2": "in"}
    assert all(hits > 0 for hits in _hits_during_requests(port, backends).values())


def test_the_check_through_nginx_passes_while_a_host_serves_and_names_a_url_that_never_answers(nginx):
    block, port, backends = nginx
    good = block.model_copy(update={"check_urls": [f"http://127.0.0.1:{port}/"]})
    assert set(check_through(good)) == {f"http://127.0.0.1:{port}/"}
    dead = block.model_copy(update={"check_urls": [f"http://127.0.0.1:{free_port()}/health"],
                                    "check_timeout_seconds": 0.5})
    started = time.monotonic()
    with pytest.raises(LoadBalancerError, match="did not answer 2xx through the load balancer within 0.5 s"):
        check_through(dead)
    assert time.monotonic() - started < 5


def _hits_during_requests(port: int, backends, count: int = 20) -> dict[str, int]:
    before = {name: b.count() for name, b in backends.items()}
    for _ in range(count):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
    return {name: b.count() - before[name] for name, b in backends.items()}
