"""The fleet: `hosts:` (where shipyard deploys over SSH) and `ssh:` (how it connects to them).

Only validated here; shipyard/ssh/ owns the connections. Addresses, users and paths are checked strictly
because they end up as connection targets and in remote command lines (quoted in one place, but a user
name with a space or a relative release dir is a mistake better reported at load time).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from shipyard.config.base import FieldProblem, Name, StrictModel
from shipyard.config.durations import Duration

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?", re.IGNORECASE)
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.:/-]{0,63}")


def check_host_address(value: str) -> str:
    """An IPv4/IPv6 address (no brackets, no port) or a DNS name."""
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text) or text.replace(".", "").isdigit():
        raise ValueError(f"invalid address {value!r}: expected an IP address or a host name like "
                         "web-1.example.com (no port: use `port`)")
    return text


def check_user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise ValueError(f"invalid user {value!r}: a login name (letters, digits, '_', '.', '-', "
                         "at most 32 characters, not starting with a digit or '-')")
    return value


def check_remote_dir(value: str) -> str:
    if not value.startswith("/") or "\0" in value or "\n" in value or len(value) > 1024:
        raise ValueError(f"invalid directory {value!r}: an absolute path on the host, like /srv/shipyard")
    return value.rstrip("/") or "/"


HostAddress = Annotated[str, AfterValidator(check_host_address)]
User = Annotated[str, AfterValidator(check_user)]
RemoteDir = Annotated[str, AfterValidator(check_remote_dir)]


class Host(StrictModel):
    """A machine shipyard reaches over SSH."""

    address: HostAddress = Field(description="IP address or DNS name to connect to (no port; see `port`).")
    user: User = Field(description="Login name on the host (public-key authentication only).")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    labels: dict[Name, str] = Field(default_factory=dict,
                                    description="Free-form labels (`zone: a`), to pick hosts by.")
    release_dir: RemoteDir = Field(default="/srv/shipyard",
                                   description="Where releases are unpacked on the host (absolute path).")

    @field_validator("labels")
    @classmethod
    def _label_values(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _LABEL_VALUE.fullmatch(text):
                raise FieldProblem(f"invalid label value {text!r}: letters, digits and '_.:/-', "
                                   "at most 63 characters", key)
        return value


class Ssh(StrictModel):
    """How shipyard connects to `hosts`: one key, strict host keys, bounded parallelism."""

    key: str | None = Field(default=None, description="The client's private key in OpenSSH or PEM form, "
                            'usually `"${secret:DEPLOY_SSH_KEY}"` (never a passphrase-protected key: '
                            "shipyard never prompts).")
    key_file: str | None = Field(default=None, description="Or a file holding the private key, relative to "
                                 "shipyard.yaml's directory.")
    known_hosts: str = Field(default=".shipyard/known_hosts", min_length=1,
                             description="The only host keys trusted (OpenSSH format), relative to "
                                         "shipyard.yaml's directory; `shipyard hosts trust` adds to it.")
    connect_timeout: Duration = Field(default=5.0, gt=0, le=300,
                                      description="Limit on connecting, key exchange and login, per host.")
    keepalive: Duration = Field(default=15.0, ge=0, le=3600,
                                description="Keepalive interval on idle connections (0: none); three "
                                            "unanswered keepalives drop the connection.")
    parallel: int = Field(default=8, ge=1, le=256, description="Hosts worked on at once.")

    @model_validator(mode="after")
    def _one_key(self) -> Ssh:
        if self.key is not None and self.key_file is not None:
            raise FieldProblem("give `key` or `key_file`, not both", "key_file")
        return self
