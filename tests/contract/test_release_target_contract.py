"""The release-target contract (shipyard.targets.base.ReleaseTarget), run against every registered kind
that activates releases instead of running instances (static, command): preflight lists problems without
raising, activate makes a release live (as the remote itself says) and is idempotent, rollback makes an
earlier record live again, status is None while the live release is fine, prune never touches what is in
use, and a remote that refuses is one of the kind's errors in one line."""

from __future__ import annotations

import pytest

from .release_harnesses import ReleaseCase, record_ok

pytestmark = pytest.mark.timeout(60)
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40


async def test_preflight_finds_nothing_on_a_sound_remote(release_case: ReleaseCase) -> None:
    assert await release_case.target.preflight() == []


async def test_activate_makes_the_release_live_and_is_idempotent(release_case: ReleaseCase) -> None:
    t = release_case.target
    record_ok(await t.activate(release_case.spec(SHA1)), SHA1)
    assert release_case.live() == SHA1
    assert await t.status() is None
    record_ok(await t.activate(release_case.spec(SHA1)), SHA1)
    assert release_case.live() == SHA1 and await t.status() is None


async def test_rollback_makes_an_earlier_record_live_again(release_case: ReleaseCase) -> None:
    t = release_case.target
    first = await t.activate(release_case.spec(SHA1))
    record_ok(await t.activate(release_case.spec(SHA2)), SHA2)
    assert release_case.live() == SHA2
    first.pop("output", None)       # the engine keeps output out of stored records
    record_ok(await t.rollback(first, release_case.spec(SHA1)), SHA1)
    assert release_case.live() == SHA1 and await t.status() is None


async def test_prune_keeps_what_is_in_use(release_case: ReleaseCase) -> None:
    t = release_case.target
    records = {sha: await t.activate(release_case.spec(sha)) for sha in (SHA1, SHA2, SHA3)}
    result = await t.prune(2, {SHA3, SHA1})
    assert isinstance(result, dict)
    assert release_case.live() == SHA3 and await t.status() is None
    record_ok(await t.rollback(records[SHA1], release_case.spec(SHA1)), SHA1)   # the previous one is still there
    assert release_case.live() == SHA1


async def test_a_refusing_remote_is_one_line_of_the_kinds_errors(release_case: ReleaseCase) -> None:
    t = release_case.target
    await t.activate(release_case.spec(SHA1))
    await release_case.breaks()
    problems = await t.preflight()
    assert problems and all(isinstance(p, str) and "\n" not in p for p in problems), problems
    with pytest.raises(release_case.errors) as err:
        await t.activate(release_case.spec(SHA2))
    assert "\n" not in str(err.value).strip(), str(err.value)
    assert "Traceback" not in str(err.value)
