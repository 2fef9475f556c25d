"""The pure parts of ECR handling: image references, the retention planner, which services count as
in use, the build image's tag plan and semver choice, and the config models' refusals."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from shipyard.config.ecr import EcrPolicy
from shipyard.config.pipeline import BuildImage
from shipyard.ecr.inuse import task_definitions, warm_until, why_counted
from shipyard.ecr.refs import ImageRef, parse_ref
from shipyard.ecr.retention import Image, plan_prune
from shipyard.ecr.tags import plan_tags, semver_of

D = [f"sha256:{n:064x}" for n in range(20)]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def img(n: int, *tags: str) -> Image:
    return Image(D[n], T0 + dt.timedelta(minutes=n), tuple(tags))


@pytest.mark.parametrize(("text", "ref"), [
    ("123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/gli/api:abc", ImageRef("gli/api", "abc")),
    (f"123456789012.dkr.ecr.us-east-1.amazonaws.com/api@{D[3]}", ImageRef("api", None, D[3])),
    (f"api:v1@{D[4]}", ImageRef("api", "v1", D[4])),
    ("localhost:5000/api:1", ImageRef("api", "1")),
    ("registry:5000/api", ImageRef("api", "latest")),
    ("gli/api", ImageRef("gli/api", "latest")),
])
def test_references_reduce_to_repository_and_tag_or_digest(text: str, ref: ImageRef) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text", ["", "  ", "api@sha256:short", "a b:c", "host.io/"])
def test_what_is_not_a_reference_is_none(text: str) -> None:
    assert parse_ref(text) is None


def test_the_newest_n_are_kept_and_the_rest_deleted_oldest_last() -> None:
    images = [img(n, f"t{n}") for n in (3, 0, 5, 1, 4, 2)]     # listing order is not push order
    plan = plan_prune("api", images, {}, 2)
    assert [d.image.digest for d in plan.decisions] == [D[5], D[4], D[3], D[2], D[1], D[0]]
    assert [i.digest for i in plan.delete] == [D[3], D[2], D[1], D[0]]
    assert [d.reason for d in plan.kept] == ["newest 2 (#1)", "newest 2 (#2)"]


def test_untagged_images_count_toward_n_and_can_go() -> None:
    plan = plan_prune("api", [img(0, "old"), img(1), img(2, "new")], {}, 2)
    assert [i.digest for i in plan.delete] == [D[0]]
    assert plan.decisions[1].image.tags == () and plan.decisions[1].keep


def test_an_in_use_image_is_never_deleted_by_tag_or_by_digest() -> None:
    images = [img(n, f"t{n}") for n in range(6)] + [img(6)]
    in_use = {ImageRef("api", "t1"): "service api-blue", ImageRef("api", None, D[0]): "service api-green",
              ImageRef("other", "t2"): "another repository's t2", ImageRef("api", "t5"): "service api"}
    plan = plan_prune("api", images, in_use, 1)
    kept = {d.image.digest: d.reason for d in plan.kept}
    assert kept == {D[6]: "newest 1 (#1)", D[5]: "in use: service api (as :t5)",
                    D[1]: "in use: service api-blue (as :t1)", D[0]: "in use: service api-green (by digest)"}
    assert [i.digest for i in plan.delete] == [D[4], D[3], D[2]]     # t2 is held in another repository only


def test_ties_in_push_time_are_broken_the_same_way_every_time() -> None:
    same = [Image(D[n], T0, ()) for n in (2, 0, 1)]
    first = plan_prune("api", same, {}, 1)
    assert [i.digest for i in first.delete] == [D[1], D[0]]
    assert plan_prune("api", list(reversed(same)), {}, 1) == first


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_prune("api", [], {}, 0)


def test_a_pushed_at_given_as_epoch_seconds_is_read() -> None:
    image = Image.from_detail({"imageDigest": D[1], "imagePushedAt": 1767225600, "imageTags": ["b", "a"]})
    assert image.pushed_at == T0 and image.tags == ("a", "b")


NOW = 1_800_000_000.0


def svc(name: str, desired: int = 0, running: int = 0, warm: str | None = None, status: str = "ACTIVE") -> dict:  # type: ignore[type-arg]
    tags = [{"key": "shipyard:warm-until", "value": warm}] if warm is not None else []
    return {"serviceName": name, "status": status, "desiredCount": desired, "runningCount": running,
            "pendingCount": 0, "tags": tags}


def test_which_services_count() -> None:
    assert why_counted(svc("live", desired=2), NOW) == "service live"
    assert why_counted(svc("draining", running=1), NOW) == "service draining"
    assert why_counted(svc("warm", warm=str(NOW + 60)), NOW) == "service warm (warm until 2027-01-15T08:01:00Z)"
    assert why_counted(svc("warm-iso", warm="2027-01-15T08:01:00Z"), NOW) is not None
    assert why_counted(svc("expired", warm=str(NOW - 1)), NOW) is None
    assert why_counted(svc("idle"), NOW) is None
    assert why_counted(svc("garbled", warm="soon"), NOW) is None
    assert why_counted(svc("gone", desired=1, status="INACTIVE"), NOW) is None
    assert warm_until(None) is None and warm_until("12.5") == 12.5


def test_every_task_definition_of_a_service_counts() -> None:
    service = {"taskDefinition": "arn:td/api:3",
               "deployments": [{"status": "PRIMARY", "taskDefinition": "arn:td/api:3"},
                               {"status": "ACTIVE", "taskDefinition": "arn:td/api:2"}],
               "taskSets": [{"id": "ts-1", "taskDefinition": "arn:td/api:1"}]}
    assert [arn for arn, _ in task_definitions(service)] == ["arn:td/api:3", "arn:td/api:2", "arn:td/api:1",
                                                            "arn:td/api:3"]


def test_semver_is_the_highest_version_tag_without_its_v() -> None:
    assert semver_of(["deploy-20260101", "v1.2.3", "1.10.0", "v1.10.0-rc.1"]) == "1.10.0"
    assert semver_of(["v2.0.0-rc.2", "v2.0.0-rc.10"]) == "2.0.0-rc.2"      # prerelease order: text, said so
    assert semver_of(["v01.2.3", "1.2", "release", "v1.2.3+build"]) is None
    assert semver_of([]) is None


def test_the_tag_plan_skips_semver_with_a_note() -> None:
    sha = "ab" * 20
    assert plan_tags(["sha", "semver", "latest"], sha, "1.4.0").tags == ("1.4.0", "latest")
    plan = plan_tags(["sha", "semver", "latest"], sha, None)
    assert plan.tags == ("latest",) and plan.notes == (f"semver: commit {sha[:8]} has no vX.Y.Z git tag; "
                                                        "no semver tag pushed",)
    assert plan_tags(["sha"], sha, "1.0.0").tags == ()


def test_config_refusals() -> None:
    assert EcrPolicy().keep == 10 and EcrPolicy().repositories is None
    for bad in ({"keep": 0}, {"repositories": ["Api"]}, {"repositories": ["api", "api"]},
                {"repositories": ["gli//api"]}, {"extra": 1}):
        with pytest.raises(ValidationError):
            EcrPolicy.model_validate(bad)
    assert BuildImage(repository="gli/api").tags == ["sha", "semver", "latest"]
    for bad_image in ({"repository": "api", "tags": ["latest"]}, {"repository": "api", "tags": ["sha", "sha"]},
                      {"repository": "API"}, {"repository": "api", "tags": ["sha", "nightly"]},
                      {"repository": "api", "registry_id": "12"}):
        with pytest.raises(ValidationError):
            BuildImage.model_validate(bad_image)


def test_the_repository_of_an_image_template() -> None:
    from shipyard.ecr.refs import repository_of

    assert repository_of("{registry}/gli/api:{sha}") == "gli/api"
    assert repository_of("123456789012.dkr.ecr.us-east-1.amazonaws.com/api:{short}") == "api"
    assert repository_of("{registry}/gli-{service}-{env}:{sha}", {"service": "api", "env": "prod"}) == "gli-api-prod"
    assert repository_of("") is None


def test_an_image_needs_the_build_that_pushes_it() -> None:
    from shipyard.config.service import Service

    with pytest.raises(ValidationError, match="needs `build`"):
        Service.model_validate({"repo": "api", "run": "serve", "image": {"repository": "api"}})
    svc = Service.model_validate({"repo": "api", "run": "serve", "build": "make push", "image": {"repository": "api"}})
    assert svc.image is not None and svc.image.tags == ["sha", "semver", "latest"]
