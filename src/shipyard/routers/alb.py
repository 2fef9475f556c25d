"""An ALB listener as a router: backends are target groups, weights are the listener's weighted forward.

- set_backends: one ModifyListener (or ModifyRule) call replaces the default action (or the rule's) with a
  forward over the given target groups and weights (integers 0..999, ALB's range), so the change is
  atomic; an empty set is a fixed 503 response ("no backends"), since a listener must keep an action.
- backends / verify: the action read back from ELBv2 (what the ALB really serves, not what was sent).
- drain: a target group taken out of the forward still finishes its in-flight requests; ALB gives them the
  group's deregistration delay, so a drain waits that long (bounded by `max_drain`) and reports 0: ALB
  does not say how many connections are left.
Every client comes from shipyard.aws and every AWS error becomes a one-line RouterError naming the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shipyard.aws import AwsSettings, calling, client
from shipyard.config.ecs import AlbRouter as AlbConfig
from shipyard.errors import RouterError
from shipyard.routers.base import WeightedBackend

MAX_WEIGHT = 999
NO_BACKENDS = {"Type": "fixed-response",
               "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain", "MessageBody": "no backends"}}


def forward_action(backends: list[WeightedBackend]) -> dict[str, Any]:
    """The listener action for `backends` (pure): a weighted forward, or the 503 when there are none."""
    if not backends:
        return dict(NO_BACKENDS)
    seen: set[str] = set()
    for b in backends:
        if not b.address.startswith("arn:") or ":targetgroup/" not in b.address:
            raise RouterError(f"ALB backend {b.address!r} is not a target group ARN")
        if not 0 <= b.weight <= MAX_WEIGHT:
            raise RouterError(f"ALB weight {b.weight} of {b.address} is outside 0..{MAX_WEIGHT}")
        if b.address in seen:
            raise RouterError(f"target group {b.address} listed twice")
        seen.add(b.address)
    return {"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": b.address, "Weight": b.weight} for b in backends],
        "TargetGroupStickinessConfig": {"Enabled": False}}}


def weights_of(actions: list[dict[str, Any]]) -> dict[str, int]:
    """Target group ARN -> weight of a listener's (or rule's) actions (pure); {} for anything but forward."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
        if action.get("TargetGroupArn"):
            return {action["TargetGroupArn"]: 1}
    return {}


class AlbRouter:
    # drain() cannot count what is left: ALB does not say, per target group, how many requests are in
    # flight; it waits the group's deregistration delay and answers 0 (routers.base.counts_in_flight).
    counts_in_flight = False

    def __init__(self, config: AlbConfig) -> None:
        self.c = config
        self._settings = AwsSettings(config.region, config.endpoint_url)
        self._elb: Any = None
        self._meta: dict[str, WeightedBackend] = {}   # what set_backends was told (revision, instance names)

    def _client(self) -> Any:
        if self._elb is None:
            self._elb = client("elbv2", self._settings, error=RouterError, read_timeout=float(self.c.timeout))
        return self._elb

    async def _aws(self, op: str, method: str, resource: str, **kwargs: Any) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            with calling("elbv2", op, resource, error=RouterError):
                return dict(getattr(self._client(), method)(**kwargs))
        try:
            async with asyncio.timeout(float(self.c.timeout)):
                return await asyncio.to_thread(call)
        except TimeoutError:
            raise RouterError(f"aws elbv2 {op} {resource}: no answer within {float(self.c.timeout):g}s") from None

    async def _actions(self) -> list[dict[str, Any]]:
        if self.c.rule_arn:
            out = await self._aws("DescribeRules", "describe_rules", self.c.rule_arn, RuleArns=[self.c.rule_arn])
            return list(out["Rules"][0].get("Actions", [])) if out.get("Rules") else []
        out = await self._aws("DescribeListeners", "describe_listeners", self.c.listener_arn,
                              ListenerArns=[self.c.listener_arn])
        return list(out["Listeners"][0].get("DefaultActions", [])) if out.get("Listeners") else []

    async def ensure(self) -> str | None:
        """The listener exists (it is created with the load balancer, not by shipyard): its DNS name and
        port, which clients reach."""
        out = await self._aws("DescribeListeners", "describe_listeners", self.c.listener_arn,
                              ListenerArns=[self.c.listener_arn])
        listener = out["Listeners"][0]
        lbs = await self._aws("DescribeLoadBalancers", "describe_load_balancers", listener["LoadBalancerArn"],
                              LoadBalancerArns=[listener["LoadBalancerArn"]])
        dns = lbs["LoadBalancers"][0].get("DNSName")
        return f"{dns}:{listener['Port']}" if dns else None

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        action = forward_action(backends)
        if self.c.rule_arn:
            await self._aws("ModifyRule", "modify_rule", self.c.rule_arn, RuleArn=self.c.rule_arn, Actions=[action])
        else:
            await self._aws("ModifyListener", "modify_listener", self.c.listener_arn,
                            ListenerArn=self.c.listener_arn, DefaultActions=[action])
        self._meta = {b.address: b for b in backends}

    async def backends(self) -> list[WeightedBackend]:
        out = []
        for arn, weight in weights_of(await self._actions()).items():
            known = self._meta.get(arn)
            name = arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]
            out.append(WeightedBackend(arn, weight, known.revision if known else "", known.instance if known else name))
        return out

    async def verify(self, backends: list[WeightedBackend]) -> bool:
        """Whether the listener forwards exactly these weights (target groups at 0 count as absent)."""
        served = {a: w for a, w in weights_of(await self._actions()).items() if w > 0}
        return served == {b.address: b.weight for b in backends if b.weight > 0}

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        """Wait the target group's deregistration delay (at most `timeout`, `ws_timeout` if longer, and
        max_drain): ALB's own budget for requests in flight to a group taken out of the forward."""
        out = await self._aws("DescribeTargetGroupAttributes", "describe_target_group_attributes", address,
                              TargetGroupArn=address)
        delay = next((float(a["Value"]) for a in out.get("Attributes", [])
                      if a.get("Key") == "deregistration_delay.timeout_seconds"), 300.0)
        await asyncio.sleep(max(0.0, min(delay, max(timeout, ws_timeout or 0.0), float(self.c.max_drain))))
        return 0

    async def stats(self) -> dict[str, Any]:
        """The weights the listener serves (request counts are CloudWatch's, per target group)."""
        return {"listener": self.c.rule_arn or self.c.listener_arn,
                "weights": weights_of(await self._actions())}
