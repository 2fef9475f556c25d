"""Alarms (CloudWatch semantics), notification channels and routes, and the secrets provider choice.

These are modelled just far enough to be validated and referenced; monitoring/, notify/ and secrets/ own
the behaviour and may add fields here as they grow.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from shipyard.config.base import FieldProblem, Name, StrictModel
from shipyard.config.durations import Duration

STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")
_PERCENTILE = re.compile(r"p(\d{1,2}(\.\d+)?|100)")
COMPARISONS = {">": ">", ">=": ">=", "<": "<", "<=": "<=",
               "GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=",
               "LessThanThreshold": "<", "LessThanOrEqualToThreshold": "<="}


ComparisonInput = Literal[">", ">=", "<", "<=", "GreaterThanThreshold", "GreaterThanOrEqualToThreshold",
                          "LessThanThreshold", "LessThanOrEqualToThreshold"]


def _comparison(value: Any) -> Any:
    if isinstance(value, str) and value.strip() in COMPARISONS:
        return COMPARISONS[value.strip()]
    return value


class Alarm(StrictModel):
    """A threshold on a metric, judged like a CloudWatch alarm: M breaching datapoints out of N periods."""

    metric: str = Field(min_length=1, description="Metric name as the monitoring providers know it.")
    statistic: str = Field(default="Average", description="Average, Sum, Minimum, Maximum, SampleCount or pNN.")
    period: Duration = Field(default=60.0, gt=0, description="Length of one datapoint's window.")
    evaluation_periods: int = Field(default=1, ge=1, description="N: how many recent periods are evaluated.")
    datapoints_to_alarm: int | None = Field(
        default=None, ge=1, description="M: breaching datapoints (of N) that raise the alarm; default N.")
    comparison: Annotated[Literal[">", ">=", "<", "<="],
                          BeforeValidator(_comparison, json_schema_input_type=ComparisonInput)] = Field(
        description='How the statistic compares to the threshold: ">", ">=", "<", "<=" '
                    "(or the CloudWatch names).")
    threshold: float = Field(description="Value the statistic is compared against.")
    treat_missing_data: Literal["missing", "notBreaching", "breaching", "ignore"] = Field(
        default="missing", description="How periods without data count: missing, notBreaching, breaching, ignore.")
    dimensions: dict[str, str] = Field(default_factory=dict, description="Labels the query is restricted to "
                                       "(CloudWatch: its dimensions, e.g. {LoadBalancer: app/gli/123}); "
                                       "shipyard adds the revision under watch for the sources that know it.")

    @field_validator("statistic")
    @classmethod
    def _statistic_known(cls, value: str) -> str:
        if value not in STATISTICS and not _PERCENTILE.fullmatch(value):
            raise ValueError(f"unknown statistic {value!r}; use {', '.join(STATISTICS)} or a percentile "
                             "like p95")
        return value

    @model_validator(mode="after")
    def _m_of_n(self) -> Alarm:
        if self.datapoints_to_alarm is not None and self.datapoints_to_alarm > self.evaluation_periods:
            raise FieldProblem(f"datapoints_to_alarm ({self.datapoints_to_alarm}) exceeds evaluation_periods "
                               f"({self.evaluation_periods})", "datapoints_to_alarm")
        return self

    @property
    def m_of_n(self) -> tuple[int, int]:
        """(datapoints_to_alarm, evaluation_periods) with the default M = N applied."""
        return (self.datapoints_to_alarm or self.evaluation_periods, self.evaluation_periods)


class CloudWatchAlarmRef(StrictModel):
    """An alarm CloudWatch itself evaluates, used as a rollback trigger as CodeDeploy does: its state is read
    (DescribeAlarms), not recomputed."""

    cloudwatch: str = Field(min_length=1, max_length=255, description="The CloudWatch alarm's name.")
    region: str | None = Field(default=None, description="AWS region (default: the AWS SDK's).")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint URL (moto, LocalStack, VPC "
                                                                "endpoints); default: the AWS SDK's.")
    poll: Duration = Field(default=10.0, ge=1, le=300, description="How often its state is read.")
    ignore_poll_failure: bool = Field(default=False, description="Carry on when the state cannot be read (as "
                                      "CodeDeploy's option); default: a deploy whose alarm cannot be read "
                                      "during its analysis fails and rolls back.")


# --- metric sources ------------------------------------------------------------------------------------
class PrometheusSource(StrictModel):
    """Alarm and judge metrics from Prometheus (PromQL over its HTTP API)."""

    type: Literal["prometheus"] = Field(description="Source kind: prometheus or cloudwatch.")
    url: str = Field(min_length=1, description="Prometheus' base URL, e.g. http://prometheus:9090.")
    queries: dict[str, str] = Field(default_factory=dict, description="Metric name -> PromQL template "
                                    "({revision}, {instance}, {service_env}, {range}, {step} are filled); "
                                    "the router's series (request_rate, http_5xx_ratio, latency_p95...) are "
                                    "built in.")
    timeout: Duration = Field(default=10.0, gt=0, le=120, description="Per-query timeout.")


class CloudWatchSource(StrictModel):
    """Alarm and judge metrics from CloudWatch (GetMetricData); a metric is `Namespace/MetricName`."""

    type: Literal["cloudwatch"] = Field(description="Source kind: prometheus or cloudwatch.")
    region: str | None = Field(default=None, description="AWS region (default: the AWS SDK's).")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint URL (moto, LocalStack, VPC "
                                                                "endpoints); default: the AWS SDK's.")
    revision_dimension: str | None = Field(default=None, description="The dimension that carries the "
                                           "revision (an app publishing metrics per revision); without it the "
                                           "canary judge cannot use this source.")


MetricSource = Annotated[PrometheusSource | CloudWatchSource, Field(discriminator="type")]


# --- notifications -------------------------------------------------------------------------------------
class SlackChannel(StrictModel):
    """Post to a Slack incoming webhook."""

    type: Literal["slack"] = Field(description="Channel kind: slack, email or webhook.")
    webhook: str = Field(min_length=1, description="Incoming-webhook URL, usually `${secret:NAME}`.")
    channel: str | None = Field(default=None, description="Override the webhook's default channel.")


class Smtp(StrictModel):
    """How to reach the mail server."""

    host: str = Field(min_length=1, description="SMTP server host name.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    username: str | None = Field(default=None, description="Login name, if the server needs one.")
    password: str | None = Field(default=None, description="Password, usually `${secret:NAME}`.")
    tls: Literal["starttls", "ssl", "none"] = Field(default="starttls", description="starttls, ssl or none.")


class EmailChannel(StrictModel):
    """Send mail through an SMTP server."""

    type: Literal["email"] = Field(description="Channel kind: slack, email or webhook.")
    to: list[str] = Field(min_length=1, description="Recipient addresses.")
    from_: str = Field(default="shipyard@localhost", alias="from", description="Sender address (key `from`).")
    smtp: Smtp = Field(description="SMTP server settings.")


class WebhookChannel(StrictModel):
    """POST a JSON event to any URL (signed with HMAC-SHA256 when `secret` is set)."""

    type: Literal["webhook"] = Field(description="Channel kind: slack, email or webhook.")
    url: str = Field(min_length=1, description="Endpoint that receives the JSON POST.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    secret: str | None = Field(default=None, description="HMAC key for the X-Shipyard-Signature header.")


Channel = Annotated[SlackChannel | EmailChannel | WebhookChannel, Field(discriminator="type")]


class NotifyRoute(StrictModel):
    """Send events matching `events` (glob patterns like `rollback.*`) to the named channels."""

    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1,
                              description='Event name patterns ("deploy.failed", "rollback.*", "*").')
    to: list[Name] = Field(min_length=1, description="Channel names (keys of `channels`).")
    environments: list[Name] | None = Field(default=None, description="Only events of these environments.")
    services: list[Name] | None = Field(default=None, description="Only events of these services.")
    severity: list[Literal["info", "warning", "critical"]] | None = Field(
        default=None, description="Only events of these severities (info, warning, critical).")


class Notifications(StrictModel):
    """Who hears about what."""

    channels: dict[Name, Channel] = Field(default_factory=dict, description="Named delivery channels.")
    routes: list[NotifyRoute] = Field(default_factory=list, description="Which events go to which channels.")
    dashboard_url: str | None = Field(default=None, description="Base URL of the dashboard; messages link "
                                                               "to the deployment and its logs under it.")
    revision_url: str | None = Field(default=None, description="Link for a revision in messages, with "
                                                               "{service}, {env} and {revision}, e.g. "
                                                               "https://github.com/org/{service}/commit/{revision}.")
    give_up_after: Duration = Field(default=3600.0, gt=0, description="Stop retrying a message this long "
                                                                     "after its event; the failure is recorded.")


# --- secrets ------------------------------------------------------------------------------------------
ProviderName = Literal["local", "env", "aws-secretsmanager", "aws-ssm"]


class Secrets(StrictModel):
    """Where `${secret:NAME}` references and `requires_env` values are looked up."""

    provider: ProviderName = Field(
        default="local", description="local (encrypted file), env, aws-secretsmanager or aws-ssm; "
                                     "`shipyard secrets set/generate` write here.")
    also: list[ProviderName] = Field(
        default_factory=list, description="Further providers read after `provider` (the first that has a "
                                          "name wins), e.g. [env] so CI can supply values as variables.")
    path: str | None = Field(default=None, description="local: directory of the <env>.enc files, relative to "
                                               "shipyard.yaml (default .shipyard/secrets).")
    key_file: str | None = Field(default=None, description="local: master key file when SHIPYARD_MASTER_KEY is "
                                                   "unset (default ~/.config/shipyard/<project>.key); "
                                                   "never inside the project.")
    env_prefix: str = Field(default="", description="env: variable name prefix (`{env}` is replaced), e.g. "
                                                  "SHIPYARD_SECRET_ reads DB_PASSWORD from "
                                                  "SHIPYARD_SECRET_DB_PASSWORD.")
    prefix: str | None = Field(default=None, description="AWS: name prefix, `{project}` and `{env}` are replaced "
                                                 '(default "{project}/{env}/" for Secrets Manager, '
                                                 '"/{project}/{env}/" for SSM, read recursively).')
    region: str | None = Field(default=None, description="AWS region (default: the AWS SDK's).")
    endpoint_url: str | None = Field(default=None, description="AWS: endpoint URL (LocalStack, moto, VPC "
                                                       "endpoints); default: the AWS SDK's.")
