"""shipyard.yaml: pydantic models, the loader with file:line errors, JSON Schema and `shipyard init`.

Import from here; the submodules are an implementation detail.
"""

from shipyard.config.alerting import (
    Alarm,
    Channel,
    EmailChannel,
    Notifications,
    NotifyRoute,
    Secrets,
    SlackChannel,
    WebhookChannel,
)
from shipyard.config.checks import ExecCheck, HealthCheck, HttpCheck, TcpCheck
from shipyard.config.deploy import (
    AllAtOnce,
    BlueGreen,
    BuiltinRouter,
    Canary,
    CanaryStep,
    Deploy,
    HaproxyRouter,
    LocalTarget,
    Rolling,
    Router,
    Strategy,
    Target,
)
from shipyard.config.durations import Duration, format_duration, parse_duration
from shipyard.config.loader import (
    CONFIG_NAME,
    InvalidConfig,
    check_text,
    config_schema,
    find_config,
    load_config,
    validate_config,
)
from shipyard.config.model import Approvals, Config, Environment, Repo
from shipyard.config.scaffold import render_init
from shipyard.config.service import HOOK_NAMES, EnvOverride, Hook, Hooks, ResolvedService, Service, ServiceDefaults

__all__ = [
    "CONFIG_NAME",
    "HOOK_NAMES",
    "Alarm",
    "AllAtOnce",
    "Approvals",
    "BlueGreen",
    "BuiltinRouter",
    "Canary",
    "CanaryStep",
    "Channel",
    "Config",
    "Deploy",
    "Duration",
    "EmailChannel",
    "EnvOverride",
    "Environment",
    "ExecCheck",
    "HaproxyRouter",
    "HealthCheck",
    "Hook",
    "Hooks",
    "HttpCheck",
    "InvalidConfig",
    "LocalTarget",
    "Notifications",
    "NotifyRoute",
    "Repo",
    "ResolvedService",
    "Rolling",
    "Router",
    "Secrets",
    "Service",
    "ServiceDefaults",
    "SlackChannel",
    "Strategy",
    "Target",
    "TcpCheck",
    "WebhookChannel",
    "check_text",
    "config_schema",
    "find_config",
    "format_duration",
    "load_config",
    "parse_duration",
    "render_init",
    "validate_config",
]
