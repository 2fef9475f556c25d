"""The dashboard in a real browser: Playwright drives Debian's chromium (the Playwright browser download is not
available here) against a live `shipyard serve` of a workspace whose api bakes for a few seconds with an
alarm on its 5xx ratio, so a deploy has steps that take time and an analysis with alarm values.

One workspace and server for the module (a deploy is the slow part): login (a bad token refused), the
overview with the service, a deploy started after the page opened whose steps appear live (no reload), the
deployment's page with its alarm chart and text alternative, a read token without write buttons, forms
without the CSRF token or from another origin refused (403), axe-core with no serious or critical violation
on every page, screenshots at 1280 px and at phone width (kept under the test's tmp dir and in docs/img)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.testing.servers import missing_server
from shipyard.testing.wait import wait_until

from .conftest import E2E, Background, assert_ok, make_workspace, start_serve, stop_serve

CHROMIUM = Path("/usr/bin/chromium")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
ALARMS = """
alarms:
  high_5xx: {metric: http_5xx_ratio, statistic: Average, period: 1s, evaluation_periods: 3,
             datapoints_to_alarm: 2, comparison: ">", threshold: 0.10, treat_missing_data: notBreaching}
"""
DEADLINE_MS = 90_000

sync_api = pytest.importorskip("playwright.sync_api")


class Served:
    def __init__(self, e2e: E2E, server: Background, url: str, tokens: dict[str, str], first: str) -> None:
        self.e2e, self.server, self.url, self.tokens, self.first = e2e, server, url, tokens, first


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not CHROMIUM.exists():
        missing_server("chromium (Debian's package; scripts/bootstrap installs it)")
    e2e = make_workspace(tmp_path_factory.mktemp("dash") / "ws")
    try:
        e2e.edit_config(lambda text: text.replace(
            "      strategy: {type: rolling, batch_size: 1}\n",
            "      strategy: {type: rolling, batch_size: 1}\n      bake: 3s\n      alarms: [high_5xx]\n", 1) + ALARMS)
        tokens = {}
        for name, scopes in (("deployer", "deploy,read"), ("reader", "read")):
            made = assert_ok(e2e.cli("tokens", "create", "--name", name, "--scopes", scopes, "--json"))
            tokens[name] = json.loads(made.stdout)["token"]
        assert_ok(e2e.deploy())                       # a finished deployment with an analysis to chart
        first = e2e.deployments()[0]["id"]
        server, url = start_serve(e2e)
        try:
            yield Served(e2e, server, url, tokens, first)
        finally:
            stop_serve(server)
    finally:
        e2e.stop()


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def login(browser: Any, served: Served, token: str, **context: Any) -> Any:
    page = browser.new_context(base_url=served.url, **context).new_page()
    page.set_default_timeout(30_000)
    page.goto("/")
    assert "/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/")
    return page


def shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_IMG / f"{name}.png")


def serious(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes: {v['nodes'][0]['target']})"
            for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


def test_login_refuses_a_bad_token_and_every_page_wants_one(browser: Any, served: Served) -> None:
    for path in ("/", "/history", f"/deployments/{served.first}", "/dora", "/report", "/promotions"):
        res = httpx.get(f"{served.url}{path}", follow_redirects=False, timeout=10)
        assert res.status_code == 303 and res.headers["location"].startswith("/login"), (path, res.status_code)
    # the JSON API is unchanged: a bearer token, never the cookie
    assert httpx.get(f"{served.url}/api/v1/status", timeout=10).status_code == 401
    page = browser.new_context(base_url=served.url).new_page()
    page.goto("/login")
    page.fill("#token", "shy_0000000000000000_not-a-real-token")
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    assert "not valid" in page.inner_text("[role=alert]")
    assert not [c for c in page.context.cookies() if c["name"] == "shipyard_session"]


def test_overview_follows_a_deploy_live(browser: Any, served: Served, tmp_path: Path) -> None:
    page = login(browser, served, served.tokens["deployer"], viewport={"width": 1280, "height": 900})
    assert page.locator('td[data-cell="api/stg"] code').first.inner_text().strip()
    assert "api" in page.locator("table.grid tbody").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "shipyard_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator("#approvals").count() == 1             # the approvals' place, empty for now
    assert page.locator('form[action="/actions/deploy"]').count() > 0
    assert serious(page) == []
    page.evaluate("window.__not_reloaded = true")

    res = httpx.post(f"{served.url}/api/v1/deployments", json={"service": "api", "env": "stg"}, timeout=120,
                     headers={"Authorization": f"Bearer {served.tokens['deployer']}"})
    assert res.status_code == 202, res.text
    dep_id = res.json()["id"]
    rows = f'article.in-progress[data-deployment="{dep_id}"] tr.step'
    page.wait_for_selector(rows, timeout=DEADLINE_MS)
    first_count = page.locator(rows).count()
    # (polled from here: the page's CSP allows no eval, which wait_for_function would need)
    wait_until(lambda: page.locator(rows).count() > first_count, DEADLINE_MS / 1000, "more step rows, live")
    shot(page, tmp_path, "overview")
    assert page.evaluate("window.__not_reloaded") is True     # the rows came by the live update

    page.goto(f"/deployments/{dep_id}")
    page.evaluate("window.__not_reloaded = true")
    page.wait_for_selector('dd[data-state="succeeded"]', timeout=DEADLINE_MS)
    assert page.evaluate("window.__not_reloaded") is True
    page.wait_for_selector("figure[data-alarm=high_5xx] svg", timeout=30_000)
    svg = page.locator("figure[data-alarm=high_5xx] svg").first
    assert svg.get_attribute("role") == "img"
    assert "high_5xx" in svg.locator("title").text_content()
    assert "threshold" in svg.locator("desc").text_content() or "0.1" in svg.locator("desc").text_content()
    assert page.locator("figure[data-alarm=high_5xx] details table").count() == 1
    assert page.locator("svg.chart line.threshold").count() >= 1
    assert serious(page) == []
    shot(page, tmp_path, "deployment")

    for path, name in (("/history?service=api", "history"), ("/dora", "dora"), ("/report", "report"),
                       ("/promotions", None)):
        page.goto(path)
        assert serious(page) == [], path
        if name:
            shot(page, tmp_path, name)
    page.goto("/history?env=stg&state=succeeded")
    assert page.locator(f'a[href="/deployments/{dep_id}"]').count() == 1
    page.goto("/history?state=failed")
    assert page.locator(f'a[href="/deployments/{dep_id}"]').count() == 0

    phone = login(browser, served, served.tokens["deployer"], viewport={"width": 390, "height": 844},
                  is_mobile=True, has_touch=True)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(phone, tmp_path, "overview-phone")


def test_a_read_token_sees_no_write_buttons_and_its_posts_are_refused(browser: Any, served: Served) -> None:
    page = login(browser, served, served.tokens["reader"])
    assert "api" in page.locator("table.grid tbody").inner_text()
    assert page.locator('form[action^="/actions/"]').count() == 0
    csrf = page.locator('form[action="/logout"] input[name=csrf]').get_attribute("value")
    before = len(served.e2e.deployments())
    res = page.request.post(f"{served.url}/actions/deploy", form={"csrf": csrf, "service": "api", "env": "stg"},
                            headers={"Origin": served.url}, max_redirects=0)
    assert res.status == 403
    assert len(served.e2e.deployments()) == before


def test_posts_without_the_csrf_token_or_from_elsewhere_are_refused(browser: Any, served: Served) -> None:
    page = login(browser, served, served.tokens["deployer"])
    csrf = page.locator('form[action="/logout"] input[name=csrf]').get_attribute("value")
    before = len(served.e2e.deployments())
    form = {"service": "api", "env": "stg"}
    for fields, origin in (({**form}, served.url),                              # no CSRF token
                           ({**form, "csrf": "0" * 64}, served.url),            # a wrong one
                           ({**form, "csrf": csrf}, "http://evil.example"),     # the right one, another site
                           ({**form, "csrf": csrf}, "null")):
        res = page.request.post(f"{served.url}/actions/deploy", form=fields, headers={"Origin": origin},
                                max_redirects=0)
        assert res.status == 403, (fields, origin, res.status)
    assert len(served.e2e.deployments()) == before
    # the login form has its own pre-session token: a cross-site login (login CSRF) is refused too
    res = httpx.post(f"{served.url}/login", data={"token": served.tokens["deployer"]}, timeout=10,
                     headers={"Origin": served.url})
    assert res.status_code == 403 and "shipyard_session" not in res.headers.get("set-cookie", "")
    # and logging out needs the token as well, then the pages want a login again
    assert page.request.post(f"{served.url}/logout", form={}, headers={"Origin": served.url},
                             max_redirects=0).status == 403
    page.locator('form[action="/logout"] button').click()
    page.wait_for_url(f"{served.url}/login")
    page.goto("/history")
    assert "/login" in page.url
