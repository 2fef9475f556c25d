"""The write requests' own checks (what becomes a 422 before any engine work): a freeze override needs its
reason and a reason needs the override; `set` names are variable names; unknown fields are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shipyard.api.routes.actions import DeployRequest, RollbackRequest, TagRollbackRequest

BASE = {"service": "api", "env": "prod"}


@pytest.mark.parametrize("model", [DeployRequest, RollbackRequest])
def test_override_and_reason_go_together(model: Any) -> None:
    assert model(**BASE).override() is None
    assert model(**BASE, override_freeze=True, reason="  the fix is in  ").override() == "the fix is in"
    for bad, text in (({"override_freeze": True}, "needs a reason"), ({"override_freeze": True, "reason": " "},
                                                                      "needs a reason"),
                      ({"reason": "why"}, "goes with override_freeze"), ({"no_wait": "maybe"}, "no_wait"),
                      ({"sevice": "api"}, "sevice")):
        with pytest.raises(ValidationError, match=text):
            model(**BASE, **bad)


def test_set_names_are_checked_and_values_bounded() -> None:
    assert DeployRequest(**BASE, set={"LOG_LEVEL": "debug", "_X1": ""}).set == {"LOG_LEVEL": "debug", "_X1": ""}
    for sets in ({"1BAD": "x"}, {"A-B": "x"}, {"": "x"}, {"OK": "x" * 4097}, {f"V{n}": "" for n in range(101)}):
        with pytest.raises(ValidationError):
            DeployRequest(**BASE, set=sets)
    with pytest.raises(ValidationError):
        RollbackRequest(**BASE, set={"A": "1"})          # a rollback runs what ran: no new values


def test_tag_rollback_wants_an_env_and_a_tag() -> None:
    assert TagRollbackRequest(env="prod", to="deploy-1").force is False
    for bad in ({"env": "prod"}, {"to": "deploy-1"}, {"env": "prod", "to": ""}, {"env": "prod", "to": "t", "x": 1}):
        with pytest.raises(ValidationError):
            TagRollbackRequest(**bad)
