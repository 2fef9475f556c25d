"""How a service is deployed: where instances run (target), who sends them traffic (router), how the new
revision replaces the old one (strategy) and the timers around that.

Each part is a discriminated union on `type` so that new targets/routers/strategies (ssh, HAProxy, ECS...)
are new classes beside these, not new optional fields on one catch-all model.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from shipyard.config.alerting import CloudWatchAlarmRef
from shipyard.config.base import FieldProblem, Name, StrictModel, check_address
from shipyard.config.durations import Duration
from shipyard.config.kinds import RegisteredKinds

DEFAULT_DRAIN = 30.0


# --- targets -------------------------------------------------------------------------------------------
class LocalTarget(StrictModel):
    """Instances are processes on this host, supervised by the local shipyard agent."""

    type: Literal["local"] = Field(default="local", description="Target kind; `local` runs processes on this host.")
    instances: int = Field(default=1, ge=1, le=64, description="How many instances of the service run at once.")
    stop_timeout: Duration = Field(default=10.0, ge=0,
                                   description="Time between SIGTERM and SIGKILL when an instance stops.")


class SshTarget(StrictModel):
    """Instances run on `hosts:` machines, each supervised by the shipyard agent `shipyard hosts setup` put there,
    driven through its unix socket forwarded over SSH."""

    type: Literal["ssh"] = Field(description="Target kind; `ssh` runs processes on hosts reached over SSH.")
    hosts: list[Name] = Field(min_length=1, description="Names of the hosts (under `hosts:`) that run the "
                                                         "service, in deploy order.")
    per_host: int = Field(default=1, ge=1, le=16, description="Instances of the service on each host.")
    port: int = Field(default=8080, ge=1, le=65535,
                      description="First port of the service on each host; instance k of a host uses port + k "
                                  "(in_place), and surge also uses the ports after them for the new set.")
    mode: Literal["surge", "in_place"] = Field(
        default="surge",
        description="surge: new instances start beside the old ones on other ports (the old set stays warm "
                    "for rollback); in_place: a host's old instance leaves rotation and stops, and the new one "
                    "takes its port (no spare ports needed, rollback redeploys).")
    stop_timeout: Duration = Field(default=10.0, ge=0,
                                   description="Time between SIGTERM and SIGKILL when an instance stops.")

    @field_validator("hosts")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        twice = sorted({h for h in value if value.count(h) > 1})
        if twice:
            raise ValueError(f"host listed twice: {', '.join(twice)}")
        return value

    @model_validator(mode="after")
    def _ports_fit(self) -> SshTarget:
        if self.port + self.slots - 1 > 65535:
            raise ValueError(f"port {self.port} leaves no room for {self.slots} ports per host (up to 65535)")
        return self

    @property
    def slots(self) -> int:
        """Ports a host may need at once: in surge the serving set, the warm previous one and the new one."""
        return self.per_host * (3 if self.mode == "surge" else 1)

    @property
    def instances(self) -> int:
        return len(self.hosts) * self.per_host


Target = Annotated[Any, RegisteredKinds("targets")]
"""`type` picks a kind of the plugin registry (local, or a plugin's): see config.kinds."""


# --- routers -------------------------------------------------------------------------------------------
def _listen_shape(value: Any) -> Any:
    if value is None or isinstance(value, str | dict):
        return value
    raise ValueError('expected "host:port" or a mapping {env: "host:port"}')


def _listen_values(value: str | dict[str, str] | None) -> str | dict[str, str] | None:
    if isinstance(value, str):
        return check_address(value)
    if isinstance(value, dict):
        return {env: check_address(addr) for env, addr in value.items()}
    return value


Listen = Annotated[
    str | dict[Name, str] | None,
    BeforeValidator(_listen_shape, json_schema_input_type=str | dict[str, str] | None),
]


class RouterTimeouts(StrictModel):
    """Timeouts of the built-in router; HAProxy's names in parentheses. docs/router.md says what each bounds."""

    connect: Duration = Field(default=5.0, gt=0,
                              description="One connection attempt to an instance (`timeout connect`).")
    response: Duration = Field(default=60.0, gt=0,
                               description="The instance sends nothing while its response is awaited or "
                                           "streaming: 504, or the response is cut (`timeout server`).")
    request: Duration = Field(default=10.0, gt=0,
                              description="A request head must arrive whole within this: 408 "
                                          "(`timeout http-request`).")
    client: Duration = Field(default=60.0, gt=0,
                             description="The client sends nothing mid-body, or reads nothing of its response, "
                                         "this long: 408 or closed (`timeout client`).")
    keepalive: Duration = Field(default=75.0, gt=0,
                                description="An idle client connection between requests is closed after this "
                                            "(`timeout http-keep-alive`).")
    pool_idle: Duration = Field(default=30.0, gt=0,
                                description="An idle pooled connection to an instance is closed after this.")


RetryCause = Literal["conn-failure", "empty-response", "response-timeout"]


def _default_retry_on() -> list[RetryCause]:
    return ["conn-failure", "empty-response"]


class BuiltinRouter(StrictModel):
    """The agent's own reverse proxy: one front address per (service, environment)."""

    type: Literal["builtin"] = Field(default="builtin", description="Router kind; `builtin` is the agent's proxy.")
    listen: Listen = Field(
        default=None,
        description='Front address "host:port" for every environment, or a mapping {env: "host:port"}; '
                    "unset means no fixed address (the router picks a free port).")
    timeouts: RouterTimeouts = Field(default_factory=RouterTimeouts,
                                     description="Timeouts: connect, response, request, client, keepalive, "
                                                 "pool_idle.")
    retries: int = Field(default=3, ge=0, le=100,
                         description="Further attempts after a failed one, on another instance when there is one.")
    retry_on: list[RetryCause] = Field(
        default_factory=_default_retry_on,
        description="Failures that are retried: conn-failure (never sent), empty-response (connection closed "
                    "without a byte back), response-timeout; past conn-failure only idempotent methods.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Peers (IP or CIDR) whose X-Forwarded-For/-Proto/-Host are extended instead of replaced.")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        return _listen_values(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"invalid trusted proxy {text!r}: expected an IP address or CIDR "
                                 "like 10.0.0.0/8") from None
        return value

    def listen_for(self, env: str) -> str | None:
        """The front address for one environment (None: not fixed)."""
        if isinstance(self.listen, dict):
            return self.listen.get(env)
        return self.listen

    def options(self) -> dict[str, Any]:
        """The router's tunables as proxy.RouterOptions keys (what the agent applies and persists)."""
        t = self.timeouts
        return {"connect_timeout": t.connect, "response_timeout": t.response, "request_timeout": t.request,
                "client_timeout": t.client, "keepalive_timeout": t.keepalive, "pool_idle_timeout": t.pool_idle,
                "retries": self.retries, "retry_on": list(self.retry_on),
                "trusted_proxies": list(self.trusted_proxies)}


_HAPROXY_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class HaproxyRouter(StrictModel):
    """A HAProxy the user runs, driven through its runtime API (stats socket): no reload per deploy."""

    type: Literal["haproxy"] = Field(description="Router kind; `haproxy` drives HAProxy's runtime API.")
    socket: str = Field(min_length=1, description="Path of HAProxy's stats socket (`stats socket PATH level "
                                                  "admin`); relative paths start at shipyard.yaml's directory.")
    backend: str = Field(description="The HAProxy backend whose server slots shipyard "
                                                            "points at instances.")
    server_prefix: str | None = Field(
        default=None,
        description="Name prefix of the slots (`app` for `server-template app 1-16 ...`); default: the "
                    "prefix the backend's servers share.")
    listen: Listen = Field(
        default=None,
        description='The HAProxy frontend clients reach the service at, "host:port" or {env: "host:port"}: '
                    "checked to accept connections and reported by deploys.")
    timeout: Duration = Field(default=5.0, gt=0, le=300,
                              description="Bound on one runtime API command (connect, send, answer).")
    host: Name | None = Field(default=None, description="The host (under `hosts:`) HAProxy runs on, reached "
                                                        "over SSH (the socket is then a path on that host); "
                                                        "unset: this machine.")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        return _listen_values(value)

    @field_validator("backend", "server_prefix")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _HAPROXY_NAME.fullmatch(value):
            raise ValueError(f"invalid HAProxy name {value!r}: use 1-64 letters, digits, '-', '_', '.' or ':'")
        return value

    @field_validator("socket")
    @classmethod
    def _check_socket(cls, value: str) -> str:
        if "\0" in value or "\n" in value:
            raise ValueError("the socket path may not contain NUL or a newline")
        return value

    def listen_for(self, env: str) -> str | None:
        if isinstance(self.listen, dict):
            return self.listen.get(env)
        return self.listen


Router = Annotated[Any, RegisteredKinds("routers")]
"""`type` picks a kind of the plugin registry (builtin, haproxy, or a plugin's): see config.kinds."""


class NginxRouter(StrictModel):
    """An nginx the user runs: shipyard renders the upstream into a file nginx.conf includes, checks with
    `nginx -t`, reloads gracefully and reads back the generation nginx's workers serve."""

    type: Literal["nginx"] = Field(description="Router kind; `nginx` renders an upstream and reloads nginx.")
    upstream: str = Field(description="Name of the `upstream` block shipyard writes (proxy_pass http://NAME).")
    file: str = Field(min_length=1, description="The file shipyard owns and nginx.conf includes inside "
                                                "`http {}`; relative paths start at shipyard.yaml's directory.")
    conf: str = Field(default="/etc/nginx/nginx.conf", description="The nginx.conf that `nginx -t` and "
                                                                   "`nginx -s reload` use (-c).")
    status: str = Field(default="127.0.0.1:8099",
                        description="Loopback address of the status server rendered beside the upstream: it "
                                    "answers the generation nginx serves, read back after each reload.")
    binary: str = Field(default="nginx", description="The nginx executable.")
    listen: Listen = Field(default=None, description='The address clients reach the service at, "host:port" '
                                                     'or {env: "host:port"} (reported by deploys).')
    timeout: Duration = Field(default=10.0, gt=0, le=300,
                              description="Bound on each nginx command and on the new workers answering.")
    host: Name | None = Field(default=None, description="The host (under `hosts:`) nginx runs on, reached over "
                                                        "SSH (paths are then on that host); unset: this machine.")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        return _listen_values(value)

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError(f"invalid upstream name {value!r}: 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("status")
    @classmethod
    def _check_status(cls, value: str) -> str:
        return check_address(value)

    @field_validator("file", "conf", "binary")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if "\0" in value or "\n" in value:
            raise ValueError("a path may not contain NUL or a newline")
        return value

    def listen_for(self, env: str) -> str | None:
        if isinstance(self.listen, dict):
            return self.listen.get(env)
        return self.listen


# --- strategies ----------------------------------------------------------------------------------------
class AllAtOnce(StrictModel):
    """Stop the old instances and start the new ones: brief downtime, for dev or singletons."""

    type: Literal["all_at_once"] = Field(description="Strategy kind.")


class Rolling(StrictModel):
    """Replace instances in batches, keeping capacity within max_surge/max_unavailable."""

    type: Literal["rolling"] = Field(default="rolling", description="Strategy kind.")
    batch_size: int = Field(default=1, ge=1, description="Instances replaced per batch.")
    max_surge: int = Field(default=1, ge=0, description="Instances allowed above the desired count during a batch.")
    max_unavailable: int = Field(default=0, ge=0, description="Instances allowed below the desired count.")
    drain_timeout: Duration = Field(default=DEFAULT_DRAIN, ge=0,
                                    description="How long in-flight requests may finish on a removed instance.")
    per: Literal["instance", "host"] = Field(
        default="instance",
        description="instance: batches of instances (batch_size, max_surge, max_unavailable); host: batches of "
                    "hosts of an ssh target (batch, minimum_healthy_hosts), CodeDeploy's way.")
    batch: Literal["one_at_a_time", "half_at_a_time", "all_at_once"] | None = Field(
        default=None,
        description="With per: host, hosts deployed at once: one_at_a_time, half_at_a_time (half, rounded "
                    "down, at least one) or all_at_once. Default: one_at_a_time unless minimum_healthy_hosts "
                    "decides.")
    minimum_healthy_hosts: int | str | None = Field(
        default=None,
        description='With per: host, hosts that must stay in service throughout: a count (2) or a percent '
                    '("75%", rounded up). Sets the batch to the rest; with `batch` too, the smaller wins. A '
                    "host unreachable before the deploy is skipped (and recorded) when this still holds.")

    @field_validator("minimum_healthy_hosts")
    @classmethod
    def _healthy_shape(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, str):
            text = value.strip()
            if not (text.endswith("%") and text[:-1].strip().isdigit() and 0 <= int(text[:-1]) <= 100):
                raise ValueError(f"invalid minimum_healthy_hosts {value!r}: a count like 2 or a percent like "
                                 '"75%"')
            return f"{int(text[:-1])}%"
        if isinstance(value, int) and value < 0:
            raise ValueError("minimum_healthy_hosts must be 0 or more")
        return value

    @model_validator(mode="after")
    def _can_progress(self) -> Rolling:
        if self.max_surge + self.max_unavailable <= 0:
            raise ValueError("max_surge + max_unavailable must be > 0, or a rolling deploy cannot progress")
        return self


class BlueGreen(StrictModel):
    """Start a full new set beside the old one, switch all traffic at once, keep the old set warm."""

    type: Literal["blue_green"] = Field(description="Strategy kind.")
    drain_timeout: Duration = Field(default=DEFAULT_DRAIN, ge=0,
                                    description="How long in-flight requests may finish on the old set.")
    verify_timeout: Duration | None = Field(
        default=None, ge=0, description="After the switch, how long to watch the new set before retiring the old one.")


class CanaryStep(StrictModel):
    """One canary stage: send `weight` percent of requests to the new revision, then wait `pause`."""

    weight: int = Field(ge=1, le=100, description="Percent of requests sent to the new revision (1-100).")
    pause: Duration = Field(default=0.0, ge=0, description="How long to stay at this weight (analysis runs meanwhile).")


class Canary(StrictModel):
    """Shift traffic to the new revision in increasing weighted steps; 100% follows the last step."""

    type: Literal["canary"] = Field(description="Strategy kind.")
    steps: list[CanaryStep] = Field(min_length=1, description="Traffic steps, weights strictly increasing.")
    drain_timeout: Duration = Field(default=DEFAULT_DRAIN, ge=0,
                                    description="How long in-flight requests may finish on the old set.")

    @model_validator(mode="after")
    def _weights_increase(self) -> Canary:
        for index, (prev, step) in enumerate(zip(self.steps, self.steps[1:], strict=False), start=1):
            if step.weight <= prev.weight:
                raise FieldProblem(f"canary weights must increase: {step.weight} follows {prev.weight}",
                                   "steps", index, "weight")
        return self


Strategy = Annotated[AllAtOnce | Rolling | BlueGreen | Canary, Field(discriminator="type")]

STRATEGY_DEFAULT_TYPE = "rolling"


def _default_type(kind: str) -> Any:
    def fill(value: Any) -> Any:
        if isinstance(value, dict) and "type" not in value:
            return {"type": kind, **value}
        return value
    return fill


# --- the deploy section --------------------------------------------------------------------------------
class JudgeMetric(StrictModel):
    """One metric the canary judge compares between canary and baseline."""

    metric: str = Field(min_length=1, description="Metric name (e.g. error_rate, latency_p95).")
    direction: Literal["increase", "decrease", "either"] = Field(
        default="increase", description="Which change is harmful: increase, decrease or either.")
    tolerance: float = Field(default=0.1, ge=0, description="Allowed relative change of the median (0.1 = 10%).")
    min_delta: float = Field(default=0.0, ge=0, description="Smallest absolute change that can count as a "
                                                             "regression.")
    weight: float = Field(default=1.0, gt=0, description="Weight of this metric in the score.")


class CanaryAnalysis(StrictModel):
    """Canary vs baseline judgement at each canary analyze step (Mann-Whitney U + tolerance, score 0-100)."""

    metrics: list[JudgeMetric] = Field(min_length=1, description="Metrics compared between canary and baseline.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level of the Mann-Whitney U test.")
    pass_score: float = Field(default=95.0, ge=0, le=100, description="Score at or above which the canary passes.")
    marginal_score: float = Field(default=75.0, ge=0, le=100,
                                  description="Score at or above which it is marginal (continues, with a "
                                              "warning event); below, it fails and rolls back.")
    min_samples: int = Field(default=3, ge=1, description="Samples needed on each side per metric.")
    min_requests: int = Field(default=0, ge=0, description="Requests the canary must serve in the window.")
    no_data: Literal["fail", "pause", "pass"] = Field(
        default="fail", description="Too little data or traffic: fail (roll back), pause (keep collecting up "
                                    "to no_data_wait, then fail) or pass (recorded as a pass without data).")
    no_data_wait: Duration = Field(default=60.0, ge=0, description="With no_data: pause, how long to keep "
                                                                    "collecting before failing.")


def _alarm_kind(value: Any) -> str:
    return "name" if isinstance(value, str) else "cloudwatch"


# One error per bad entry: a string is a name, anything else a CloudWatch alarm (not "either of two").
AlarmEntry = Annotated[Annotated[Name, Tag("name")] | Annotated[CloudWatchAlarmRef, Tag("cloudwatch")],
                       Discriminator(_alarm_kind)]


class Deploy(StrictModel):
    """Everything about rolling a revision out for one service (per-env overrides apply on top)."""

    target: Annotated[Target, BeforeValidator(_default_type("local"))] = Field(
        default_factory=LocalTarget, description="Where instances run: `type: local`, `ssh` on `hosts:`; where a "
                                                   "release goes as a whole: `static` (S3 + CloudFront), `command`; "
                                                   "or a kind a plugin registers.")
    router: Annotated[Router, BeforeValidator(_default_type("builtin"))] = Field(
        default_factory=BuiltinRouter,
        description="What sends traffic to instances: `type: builtin`, `haproxy`, or a kind a plugin registers.")
    strategy: Annotated[Strategy, BeforeValidator(_default_type(STRATEGY_DEFAULT_TYPE))] = Field(
        default_factory=Rolling,
        description="How the new revision replaces the old: all_at_once, rolling, blue_green or canary.")
    bake: Duration = Field(default=0.0, ge=0,
                           description="After full rollout, watch health (and alarms) this long before success.")
    keep_previous: Duration = Field(default=300.0, ge=0,
                                    description="Keep the previous instances warm this long for instant rollback.")
    step_timeout: Duration = Field(default=600.0, gt=0, description="Upper bound for any single deploy step.")
    keep_releases: int = Field(default=5, ge=1, description="Built releases kept on disk per service.")
    ws_drain_timeout: Duration | None = Field(
        default=None, ge=0, description="Drain budget for websockets and long requests (default: drain_timeout): "
                                         "websockets get this long, then a close frame (1001); an HTTP request "
                                         "still running after drain_timeout may go on until this.")
    alarms: list[AlarmEntry] = Field(
        default_factory=list, description="What rolls a deploy back: names of alarms (top-level `alarms`), "
                                          "or `{cloudwatch: NAME}` for an alarm CloudWatch evaluates.")
    metrics: Name | None = Field(default=None, description="The metric source (top-level `metrics`) the "
                                                           "alarms and the canary judge read; default: the "
                                                           "router's own counters.")
    analysis: CanaryAnalysis | None = Field(default=None, description="Canary judge run at each canary "
                                                                      "analyze step (canary vs baseline).")
    auto_rollback_window: Duration = Field(default=1800.0, ge=0,
                                           description="After a deploy succeeded, an alarm within this long "
                                                       "rolls it back (`shipyard watch`); later it only notifies.")

    @property
    def drain_timeout(self) -> float:
        """The strategy's drain budget (all_at_once stops old instances without draining)."""
        return float(getattr(self.strategy, "drain_timeout", 0.0))

    @property
    def effective_ws_drain_timeout(self) -> float:
        """Websocket drain budget: explicit value or the strategy's drain_timeout."""
        return self.drain_timeout if self.ws_drain_timeout is None else self.ws_drain_timeout
