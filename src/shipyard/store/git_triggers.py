"""GitOps records (see models.GitTrigger, GitDelivery, GitTip): claim a (service, env, sha) before deploying
it, refuse a delivery seen before, and remember the last tip handled per (repo, branch)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.domain.deployment import DeployState
from shipyard.store.models import Deployment, GitDelivery, GitTip, GitTrigger
from shipyard.store.sql import cap_text, clean_text, insert_ignore, utcnow


def claim(session: Session, *, service: str, env: str, sha: str, source: str, repo: str, branch: str,
          delivery: str | None = None, pusher: str | None = None) -> bool:
    """Record the trigger; True if this call made it (the caller deploys), False if that sha was handled."""
    return insert_ignore(session, GitTrigger, {
        "service": service, "env": env, "sha": sha, "source": source, "delivery": clean_text(delivery),
        "repo": repo, "branch": branch, "pusher": cap_text(pusher, 255), "created_at": utcnow()})


def settle(session: Session, *, service: str, env: str, sha: str, deployment_id: str | None = None,
           refused: str | None = None) -> None:
    """What the claimed trigger led to: the deployment queued, or why none was."""
    session.execute(update(GitTrigger)
                    .where(GitTrigger.service == service, GitTrigger.env == env, GitTrigger.sha == sha)
                    .values(deployment_id=deployment_id, refused=cap_text(refused, 4000))
                    .execution_options(synchronize_session=False))


def get(session: Session, service: str, env: str, sha: str) -> GitTrigger | None:
    return session.scalars(select(GitTrigger).where(GitTrigger.service == service, GitTrigger.env == env,
                                                    GitTrigger.sha == sha)).first()


def listed(session: Session, *, limit: int = 100) -> list[GitTrigger]:
    return list(session.scalars(select(GitTrigger).order_by(GitTrigger.id.desc()).limit(limit)))


def first_delivery(session: Session, source: str, delivery: str) -> bool:
    """True the first time (source, delivery) is seen; False for a replay."""
    return insert_ignore(session, GitDelivery, {"source": source, "delivery": delivery, "received_at": utcnow()})


def tip(session: Session, repo: str, branch: str) -> str | None:
    row = session.get(GitTip, (repo, branch), populate_existing=True)
    return row.sha if row is not None else None


def advance(session: Session, repo: str, branch: str, sha: str, source: str) -> None:
    """Record `sha` as the last tip handled of (repo, branch)."""
    now = utcnow()
    if insert_ignore(session, GitTip, {"repo": repo, "branch": branch, "sha": sha, "source": source, "seen_at": now}):
        return
    session.execute(update(GitTip).where(GitTip.repo == repo, GitTip.branch == branch)
                    .values(sha=sha, source=source, seen_at=now).execution_options(synchronize_session=False))


def current_at(session: Session, service: str, env: str, sha: str) -> Deployment | None:
    """The newest deployment of (service, env) when it is at `sha` and not failed: that commit is deployed
    or on its way (a promotion's auto-deploy and the watcher then do not both deploy it)."""
    row = session.scalars(select(Deployment).where(Deployment.service == service, Deployment.env == env)
                          .order_by(Deployment.created_at.desc(), Deployment.id.desc()).limit(1)).first()
    if row is None or row.revision != sha or row.state in _GONE:
        return None
    return row


_GONE = {str(DeployState.FAILED), str(DeployState.ROLLED_BACK), str(DeployState.CANCELLED),
         str(DeployState.ROLLING_BACK)}
