"""Writes: deploy, roll back, cancel a queued deployment, promote, hotfix sync, roll back to a tag, unfreeze,
recover: the same engine and fleet requests the CLI makes (scope `deploy` on the environment concerned; a
recover of every env, lifting a freeze and overriding one need `admin`: a freeze protects an env from the
very deploys a CI token makes), with the token's name as the actor. Deploy and rollback answer 202 once the
deployment is recorded; follow it at its URL or its event stream. Errors are the CLI's: 400 bad names, 404
unknown ids, 409 conflicts (frozen, running, busy with `no_wait`), 422 a body the schema refuses."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shipyard.api.auth import check_env, require, store_of
from shipyard.api.schemas import Problem
from shipyard.config.base import check_env_var
from shipyard.store import deployments as dq
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

Deployer = Annotated[ApiToken, Depends(require("deploy"))]
router = APIRouter(tags=["actions"], responses={400: {"model": Problem}, 401: {"model": Problem},
                                                403: {"model": Problem}, 409: {"model": Problem}})
NAME = Field(min_length=1, max_length=128)


class Runner(Protocol):
    async def deploy(self, service: str, env: str, *, rev: str | None, strategy: str | None, actor: str,
                     sets: dict[str, str] | None = None, override: str | None = None,
                     no_wait: bool = False) -> str:
        """Start a deploy (`sets`: non-secret values for this run; `override`: the reason to go through a
        freeze); the deployment's id once it is recorded (with `no_wait`, once it holds the lease)."""
        ...

    async def rollback(self, service: str, env: str, *, actor: str, override: str | None = None,
                       no_wait: bool = False) -> str:
        """Start a rollback to the previous good revision; its deployment's id."""
        ...

    def hotfix_targets(self) -> list[str]:
        """The environments `hotfix sync` merges into (stg and dev under prod)."""
        ...

    async def hotfix_sync(self, *, message: str, only: list[str], group: str | None, dry_run: bool,
                          no_deploy: bool, confirm: str | None, actor: str) -> dict[str, Any]:
        """`shipyard hotfix sync --json`, confirmed: the plan, the outcome, the deploys."""
        ...

    async def tag_rollback(self, env: str, to: str, *, force: bool, message: str, only: list[str],
                           group: str | None, dry_run: bool, no_deploy: bool, confirm: str | None,
                           actor: str) -> dict[str, Any]:
        """`shipyard rollback --env ENV --to TAG --json`, confirmed: every repo's branch back, env frozen."""
        ...

    async def unfreeze(self, env: str, *, actor: str) -> list[str]:
        """`shipyard unfreeze --env ENV`: the promotions (or reasons) whose freezes were lifted."""
        ...

    def environments(self) -> list[str]:
        """The project's environments, in config order."""
        ...

    async def status(self, service: str | None, envs: list[str]) -> dict[str, Any]:
        """`shipyard status --json` of these envs (every service, or `service`)."""
        ...

    async def cancel(self, deployment_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Close a queued deployment as cancelled; NotFoundError, NotCancellable (running or finished)."""
        ...

    async def promote(self, source: str, target: str, *, message: str, only: list[str], group: str | None,
                      dry_run: bool, no_deploy: bool, confirm: str | None, actor: str) -> dict[str, Any]:
        """`shipyard promote SOURCE TARGET [--dry-run] --json`, confirmed: the plan, the outcome, the deploys."""
        ...

    async def recover(self, *, service: str | None, env: str | None, actor: str) -> list[dict[str, Any]]:
        """`shipyard recover`: finish or roll back the runs a dead process left; one line per run."""
        ...


class _Admission(BaseModel):
    """What deploy and rollback share: queue or not, and going through a freeze (admin; with a reason)."""

    model_config = ConfigDict(extra="forbid")        # a misspelt field is an error, not silently ignored

    service: str = Field(min_length=1, max_length=128)
    env: str = Field(min_length=1, max_length=128)
    no_wait: bool = Field(default=False, description="Refuse (409) instead of queueing behind a running deploy.")
    override_freeze: bool = Field(default=False, description="Go ahead although the environment is frozen (scope "
                                  "admin; needs `reason`, recorded with the token's name).")
    reason: str | None = Field(default=None, max_length=500, description="Why the freeze is overridden.")

    @model_validator(mode="after")
    def _override_with_reason(self) -> _Admission:
        if self.override_freeze and not (self.reason or "").strip():
            raise ValueError("override_freeze needs a reason: why the frozen environment is deployed anyway")
        if not self.override_freeze and self.reason is not None:
            raise ValueError("reason goes with override_freeze (why a frozen environment is deployed anyway)")
        return self

    def override(self) -> str | None:
        return (self.reason or "").strip() if self.override_freeze else None


class DeployRequest(_Admission):
    rev: str | None = Field(default=None, max_length=255, description="Branch, tag or sha (default: the env's "
                                                                       "branch tip).")
    strategy: str | None = Field(default=None, max_length=64, description="Override the configured strategy.")
    set: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=100, description="NAME: VALUE of non-secret variables for this deploy "
        "(`--set`); a name that is a secret is refused (400): secrets go through `shipyard secrets set`.")

    @field_validator("set")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_env_var(name)          # ValueError: a 422 naming the bad name
        return value


class RollbackRequest(_Admission):
    pass


class Accepted(BaseModel):
    id: str
    url: str
    events: str


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Why (recorded with the token's name).")


class Cancelled(BaseModel):
    id: str
    service: str
    env: str
    state: str
    reason: str | None
    actor: str


class _FleetRequest(BaseModel):
    """What every fleet write (promote, hotfix sync, tag rollback) takes besides its environments."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="", max_length=1000, description="Merge commit and tag message.")
    only: list[Annotated[str, NAME]] = Field(default_factory=list, max_length=500, description="Only these repos.")
    group: str | None = Field(default=None, min_length=1, max_length=128, description="Only this group's repos.")
    dry_run: bool = Field(default=False, description="Answer the plan (and any conflicts); push nothing.")
    no_deploy: bool = Field(default=False, description="Do not deploy an auto_deploy target afterwards.")
    confirm: str | None = Field(default=None, max_length=128, description="The target env's name: required when "
                                "it has `confirm: twice` (the request itself is the first confirmation).")


class PromoteRequest(_FleetRequest):
    source: str = Field(min_length=1, max_length=128, description="Environment promoted from (dev).")
    target: str = Field(min_length=1, max_length=128, description="Environment promoted to (stg).")


class HotfixRequest(_FleetRequest):
    pass


class TagRollbackRequest(_FleetRequest):
    env: str = Field(min_length=1, max_length=128, description="Environment whose branch goes back (prod).")
    to: str = Field(min_length=1, max_length=255, description="The deploy tag to go back to (deploy-...).")
    force: bool = Field(default=False, description="Reset the branch by force-with-lease instead of a revert "
                        "commit (only where environments.ENV.allow_force).")


class UnfreezeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env: str = Field(min_length=1, max_length=128)


class Unfrozen(BaseModel):
    env: str
    lifted: list[str] = Field(description="What had frozen it (tag rollbacks' ids, or reasons); [] if it was not.")
    actor: str


class Promoted(BaseModel):
    plan: dict[str, Any]
    outcome: dict[str, Any] | None = Field(description="The promotion's record (null for a dry run).")
    deployments: list[dict[str, Any]]


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str | None = Field(default=None, min_length=1, max_length=128)
    env: str | None = Field(default=None, min_length=1, max_length=128,
                            description="Only this env's runs (scope deploy on it); without: every env (admin).")


class RecoveredRun(BaseModel):
    id: str
    service: str
    env: str
    state: str
    reason: str | None


class Recovered(BaseModel):
    recovered: list[RecoveredRun]


def runner_of(request: Request) -> Runner:
    runner: Runner | None = request.app.state.settings.runner
    if runner is None:
        raise HTTPException(503, "this server was started without an engine (read-only)")
    return runner


def _accepted(dep_id: str) -> Accepted:
    url = f"/api/v1/deployments/{dep_id}"
    return Accepted(id=dep_id, url=url, events=f"{url}/events/stream")


def _check_admin(token: ApiToken, env: str, what: str) -> None:
    if not tq.allows(token, "admin", env):
        raise HTTPException(403, f"the token {token.name!r} needs the 'admin' scope to {what}")


def _admit(token: ApiToken, body: _Admission) -> str | None:
    check_env(token, body.env)
    if body.override_freeze:
        _check_admin(token, body.env, f"override a freeze of {body.env}")
    return body.override()


@router.post("/deployments", status_code=202, response_model=Accepted, summary="Deploy a revision")
async def post_deployment(request: Request, body: DeployRequest, token: Deployer) -> Accepted:
    override = _admit(token, body)
    dep_id = await runner_of(request).deploy(body.service, body.env, rev=body.rev, strategy=body.strategy,
                                           actor=token.name, sets=body.set, override=override, no_wait=body.no_wait)
    return _accepted(dep_id)


@router.post("/rollbacks", status_code=202, response_model=Accepted, summary="Roll back to the previous good "
                                                                            "revision")
async def post_rollback(request: Request, body: RollbackRequest, token: Deployer) -> Accepted:
    override = _admit(token, body)
    return _accepted(await runner_of(request).rollback(body.service, body.env, actor=token.name, override=override,
                                                       no_wait=body.no_wait))


@router.post("/tag-rollbacks", response_model=Promoted, summary="Roll every repo's env branch back to a tag")
async def post_tag_rollback(request: Request, body: TagRollbackRequest, token: Deployer) -> Promoted:
    """What `shipyard rollback --env ENV --to TAG` does, in the server: each repo's branch back to its state
    at the tag (a revert commit, or `force`), pushed all or nothing, then ENV is frozen (promotions and
    deploys into it refused until an unfreeze) and an auto_deploy env's changed services deploy. An unknown
    tag: 400; repos not ready, an unfinished rollback, a rejected push: 409."""
    check_env(token, body.env)
    done = await runner_of(request).tag_rollback(body.env, body.to, force=body.force, message=body.message,
                                                 only=body.only, group=body.group, dry_run=body.dry_run,
                                                 no_deploy=body.no_deploy, confirm=body.confirm, actor=token.name)
    return Promoted(**done)


@router.post("/hotfix-syncs", response_model=Promoted, summary="Back-merge a hotfix: prod into stg, stg into dev")
async def post_hotfix_sync(request: Request, token: Deployer, body: HotfixRequest | None = None) -> Promoted:
    """What `shipyard hotfix sync` does, in the server (scope `deploy` on every environment merged into)."""
    body = body or HotfixRequest()
    runner = runner_of(request)
    for env in runner.hotfix_targets():
        check_env(token, env)
    done = await runner.hotfix_sync(message=body.message, only=body.only, group=body.group, dry_run=body.dry_run,
                                    no_deploy=body.no_deploy, confirm=body.confirm, actor=token.name)
    return Promoted(**done)


@router.post("/unfreeze", response_model=Unfrozen, summary="Allow deploys and promotions into an env again")
async def post_unfreeze(request: Request, body: UnfreezeRequest, token: Deployer) -> Unfrozen:
    """What `shipyard unfreeze --env ENV` does: lifts the freezes tag rollbacks put on ENV (recorded with
    the token's name). Scope `admin` on ENV. A freeze written in shipyard.yaml is a 409 (edit the config)."""
    check_env(token, body.env)
    _check_admin(token, body.env, f"unfreeze {body.env}")
    lifted = await runner_of(request).unfreeze(body.env, actor=token.name)
    return Unfrozen(env=body.env, lifted=lifted, actor=token.name)


@router.post("/deployments/{deployment_id}/cancel", response_model=Cancelled, summary="Cancel a queued deployment",
             responses={404: {"model": Problem}})
async def post_cancel(request: Request, deployment_id: str, token: Deployer,
                      body: CancelRequest | None = None) -> Cancelled:
    """Only a deployment waiting in the queue: its run ends without touching anything. A running one is
    a 409 (undo it with a rollback), so is a finished one."""
    with store_of(request).session(readonly=True) as s:
        row = dq.get_deployment(s, deployment_id)
        if row is None:
            raise HTTPException(404, f"no deployment {deployment_id!r}")
        check_env(token, row.env)
    done = await runner_of(request).cancel(deployment_id, actor=token.name, reason=(body or CancelRequest()).reason)
    return Cancelled(**done)


@router.post("/promotions", response_model=Promoted, summary="Promote one environment's branches into another's",
             responses={404: {"model": Problem}})
async def post_promotion(request: Request, body: PromoteRequest, token: Deployer) -> Promoted:
    """What `shipyard promote SOURCE TARGET` does, in the server (the request is the confirmation; a target
    with `confirm: twice` also wants its name in `confirm`): its answer is the plan and the promotion's
    record, and the deploys of an auto_deploy target. Nothing to promote, a conflict, a frozen target, an
    unfinished promotion or a rejected push: 409 (a rejected push's pushed repos are put back)."""
    check_env(token, body.target)
    done = await runner_of(request).promote(body.source, body.target, message=body.message, only=body.only,
                                            group=body.group, dry_run=body.dry_run, no_deploy=body.no_deploy,
                                            confirm=body.confirm, actor=token.name)
    return Promoted(**done)


@router.post("/recover", response_model=Recovered, summary="Finish or roll back runs a dead process left")
async def post_recover(request: Request, token: Deployer, body: RecoverRequest | None = None) -> Recovered:
    body = body or RecoverRequest()
    if body.env is None and (not tq.allows(token, "admin") or tq.envs_of(token) is not None):
        raise HTTPException(403, f"the token {token.name!r} needs the 'admin' scope to recover every environment "
                                 "(or name one with env)")
    if body.env is not None:
        check_env(token, body.env)
    done = await runner_of(request).recover(service=body.service, env=body.env, actor=token.name)
    return Recovered(recovered=[RecoveredRun(**r) for r in done])
