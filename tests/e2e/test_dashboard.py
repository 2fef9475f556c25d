"""The dashboard in a real browser: Playwright drives Debian's chromium (the Playwright browser download is not
available here) against a live `shipyard serve` of a workspace whose api bakes for a few seconds with an
alarm on its 5xx ratio, so a deploy has steps that take time and an analysis with alarm values; prod is
gated by two approvers (alice, bob).

One workspace and server for the module (a deploy is the slow part): login (a bad token refused), the
overview with the service, a deploy started after the page opened whose steps appear live (no reload), the
deployment's page with its alarm chart and text alternative, a read token without write buttons, forms
without the CSRF token or from another origin refused (403), approvals decided in two browsers (the deploy
then runs, its steps appearing live) and a reject with its reason cancelling one, a hostile commit message,
token name and reason shown as text, axe-core with no serious or critical violation on every page, no
horizontal overflow at 390 px, a visible keyboard focus. Screenshots go to $SHIPYARD_TEST_ARTIFACTS (else
the test's tmp dir); docs/images holds copies made from them by hand, never written by a test."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.demo.workspace import git
from shipyard.testing.servers import missing_server
from shipyard.testing.wait import wait_until

from .conftest import E2E, Background, assert_ok, make_workspace, start_serve, stop_serve

CHROMIUM = Path("/usr/bin/chromium")
GATE = "approvals: {required: 2, approvers: [alice, bob], wait: 0s, timeout: 1h}"
# What a hostile committer, token holder or approver could type: it must come out as text, run nothing.
HOSTILE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
ALARMS = """
alarms:
  high_5xx: {metric: http_5xx_ratio, statistic: Average, period: 1s, evaluation_periods: 3,
             datapoints_to_alarm: 2, comparison: ">", threshold: 0.10, treat_missing_data: notBreaching}
"""
DEADLINE_MS = 90_000
# A post checklist on stg: an automated item that passes, a manual one left for someone to confirm
CHECKS = 'checklists: {post: [{name: smoke, command: ["true"]}, {name: looked-at, confirm: "Dashboards looked at"}]}'

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
            "      strategy: {type: rolling, batch_size: 1}\n      bake: 3s\n      alarms: [high_5xx]\n", 1).replace(
            'prod: {branch: main, promote_from: stg, tag: "deploy-{ts}"}',
            f'prod: {{branch: main, promote_from: stg, tag: "deploy-{{ts}}", {GATE}}}', 1).replace(
            'tag: "stg-deploy-{ts}", auto_deploy: true}', f'tag: "stg-deploy-{{ts}}", auto_deploy: true, {CHECKS}}}',
            1) + ALARMS)
        tokens = {}
        for name, scopes in (("deployer", "deploy,read"), ("reader", "read"), ("alice", "approve,read"),
                             ("bob", "approve,read"), ("leaver", "read")):
            made = assert_ok(e2e.cli("tokens", "create", "--name", name, "--scopes", scopes, "--json"))
            tokens[name] = json.loads(made.stdout)["token"]
        assert_ok(e2e.deploy())                       # a finished deployment with an analysis to chart
        first = e2e.deployments()[0]["id"]
        server, url = start_serve(e2e)
        try:
            yield Served(e2e, server, url, tokens, first)
        finally:
            printed = stop_serve(server)
            # no token (nor the session cookie, which is one) in anything the server printed
            assert not [name for name, t in tokens.items() if t in printed], "a token in the server's output"
            stored = b"".join(p.read_bytes() for p in (e2e.root / ".shipyard").glob("state.db*") if p.is_file())
            assert not [name for name, t in tokens.items() if t.encode() in stored], "a token in the state database"
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
    assert token not in page.url
    return page


def shot(page: Any, tmp_path: Path, name: str, **how: Any) -> Path:
    """A screenshot kept as a test artifact: under $SHIPYARD_TEST_ARTIFACTS when set (CI uploads it), else
    the test's tmp dir."""
    where = Path(os.environ.get("SHIPYARD_TEST_ARTIFACTS") or tmp_path) / "dashboard"
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.png"
    page.screenshot(path=str(path), **how)
    assert path.stat().st_size > 0
    return path


@contextlib.contextmanager
def traffic(url: str) -> Iterator[None]:
    """About 20 requests a second to `url` while the block runs (bounded), so the bake's 5xx ratio has
    values to chart."""
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=2) as client:
            while not stop.wait(0.05):
                with contextlib.suppress(httpx.HTTPError):
                    client.get(url)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def fits(page: Any) -> bool:
    """Nothing wider than the viewport (a table scrolls inside its own box, never the page)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


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
    assert "Nothing awaits approval" in page.locator("#approvals").inner_text()
    assert page.locator('form[action="/actions/deploy"]').count() > 0
    assert serious(page) == []
    page.evaluate("window.__not_reloaded = true")

    rows_now = httpx.get(f"{served.url}/api/v1/status", timeout=30,
                         headers={"Authorization": f"Bearer {served.tokens['reader']}"}).json()["status"]
    listen = next(r["listen"] for r in rows_now if (r["service"], r["env"]) == ("api", "stg"))
    with traffic(f"http://{listen}/"):
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
    # the checklist, as the run left it: the smoke command passed, the manual item waits for a person
    page.wait_for_selector('section.checklist tr[data-check="smoke"][data-status="passed"]', timeout=30_000)
    assert page.locator('section.checklist tr[data-check="looked-at"]').get_attribute("data-status") == "pending"
    assert "Dashboards" not in page.locator('section.checklist tr[data-check="smoke"]').inner_text()
    page.wait_for_selector("figure[data-alarm=high_5xx] svg", timeout=30_000)
    svg = page.locator("figure[data-alarm=high_5xx] svg").first
    assert svg.get_attribute("role") == "img"
    assert "high_5xx" in svg.locator("title").text_content()
    assert "threshold" in svg.locator("desc").text_content() or "0.1" in svg.locator("desc").text_content()
    assert page.locator("figure[data-alarm=high_5xx] details table").count() == 1
    assert page.locator("svg.chart line.threshold").count() >= 1
    assert page.locator("figure[data-alarm=high_5xx] svg .s-value").count() >= 1    # the values under traffic
    assert serious(page) == []
    page.evaluate("document.getElementById('analysis-h').scrollIntoView()")
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
    fetched: list[str] = []
    phone.on("request", lambda r: fetched.append(r.url))
    for path in ("/", f"/deployments/{dep_id}", "/history", "/promotions", "/dora", "/report"):
        phone.goto(path)
        assert fits(phone), f"{path} overflows horizontally at 390 px"
        assert serious(phone) == [], path
    # every asset from the server itself (no CDN, no font service): the pages work with no way out
    assert fetched and all(u.startswith(f"{served.url}/") for u in fetched), fetched
    assert {u.removeprefix(served.url).split("?")[0] for u in fetched} >= {"/static/dashboard.css", "/static/live.js"}
    phone.goto("/")
    shot(phone, tmp_path, "overview-phone", full_page=True)


def test_the_pages_work_from_the_keyboard_with_a_visible_focus(browser: Any, served: Served) -> None:
    page = login(browser, served, served.tokens["deployer"], viewport={"width": 1280, "height": 900})
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Tab on until the first Deploy button: every stop on the way has a visible outline
    for _ in range(60):
        page.keyboard.press("Tab")
        style = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                              "return [document.activeElement.tagName, s.outlineStyle, s.outlineWidth]; })()")
        assert style[1] != "none" and style[2] != "0px", style
        if page.evaluate("document.activeElement.textContent") == "Deploy":
            break
    else:
        pytest.fail("no Deploy button reached by Tab")
    page.goto(f"/deployments/{served.first}")
    page.locator("figure[data-alarm=high_5xx] details summary").first.focus()
    page.keyboard.press("Enter")          # the chart's data table opens from the keyboard
    assert page.locator("figure[data-alarm=high_5xx] details").first.get_attribute("open") is not None


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


def test_revoking_the_token_ends_its_sessions(browser: Any, served: Served) -> None:
    page = login(browser, served, served.tokens["leaver"])
    assert_ok(served.e2e.cli("tokens", "revoke", "leaver"))
    page.goto("/history")
    assert "/login" in page.url
    assert page.request.get(f"{served.url}/fragments/overview").status == 401
    assert page.request.get(f"{served.url}/live/events").status == 401


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


# ---- approvals -------------------------------------------------------------------------------------------

def commit_on_main(served: Served, message: str) -> str:
    """A commit on the api repo's main as a developer pushes it (its subject is what the pages show)."""
    ws = served.e2e.ws
    dev = ws.dev_clones[ws.repo_for("api")]
    git(dev, "fetch", "--quiet", "origin")
    git(dev, "checkout", "--quiet", "--force", "-B", "main", "origin/main")
    git(dev, "commit", "--quiet", "--allow-empty", "-m", message)
    git(dev, "push", "--quiet", "origin", "main")
    return git(dev, "rev-parse", "HEAD")


def request_prod(served: Served, token: str) -> str:
    res = httpx.post(f"{served.url}/api/v1/deployments", json={"service": "api", "env": "prod"}, timeout=120,
                     headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 202, res.text
    dep_id: str = res.json()["id"]
    wait_until(lambda: state_of(served, dep_id) == "awaiting_approval", 60, f"{dep_id} awaiting approval")
    return dep_id


def state_of(served: Served, dep_id: str) -> str | None:
    return next((d["state"] for d in served.e2e.deployments() if d["id"] == dep_id), None)


def no_script_ran(page: Any) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    # the page's only script is the dashboard's own
    assert page.evaluate("Array.from(document.scripts).map(s => s.getAttribute('src'))") == ["/static/live.js"]


def test_two_approvers_decide_in_the_browser_and_the_deploy_runs_live(browser: Any, served: Served,
                                                                      tmp_path: Path) -> None:
    commit_on_main(served, f"fix the login {HOSTILE}")
    alice = login(browser, served, served.tokens["alice"], viewport={"width": 1280, "height": 900})
    bob = login(browser, served, served.tokens["bob"], viewport={"width": 1280, "height": 900})
    deployer = login(browser, served, served.tokens["deployer"])
    for p in (alice, bob):
        p.evaluate("window.__not_reloaded = true")
    # requested by a CLI whose actor is hostile (token names are checked; $SHIPYARD_ACTOR is free text)
    cli = served.e2e.background("deploy", "api", "--env", "prod", "--json", SHIPYARD_ACTOR=HOSTILE)
    dep_id = wait_until(lambda: next((d["id"] for d in served.e2e.deployments()
                                      if d["env"] == "prod" and d["state"] == "awaiting_approval"), None),
                        60, "the CLI's deployment awaiting approval")
    card = f'article[data-approval="{dep_id}"]'
    for p in (alice, bob, deployer):              # it appears live on every open overview
        p.wait_for_selector(card, timeout=DEADLINE_MS)
    text = alice.locator(card).inner_text()
    assert text.count(HOSTILE) == 2 and "approved 0 of 2" in text  # the subject and requester, as text
    no_script_ran(alice)
    assert serious(alice) == []
    # the deployer has no approve scope: no buttons; a forged POST with its session is refused
    assert deployer.locator(f'{card} form').count() == 0
    csrf = deployer.locator('form[action="/logout"] input[name=csrf]').get_attribute("value")
    forged = deployer.request.post(f"{served.url}/actions/approve", form={"csrf": csrf, "deployment": dep_id},
                                   headers={"Origin": served.url}, max_redirects=0)
    assert forged.status == 403
    reader = login(browser, served, served.tokens["reader"])
    csrf = reader.locator('form[action="/logout"] input[name=csrf]').get_attribute("value")
    assert reader.request.post(f"{served.url}/actions/approve", form={"csrf": csrf, "deployment": dep_id},
                               headers={"Origin": served.url}, max_redirects=0).status == 403
    alice.locator(card).scroll_into_view_if_needed()
    shot(alice, tmp_path, "approvals")

    alice.click(f'{card} button:text-is("Approve")')
    for p in (alice, bob):                        # the count moves on both pages, live
        wait_until(lambda p=p: "approved 1 of 2 (alice)" in p.locator(card).inner_text(), 30, "1 of 2 shown")
    assert state_of(served, dep_id) == "awaiting_approval"
    alice.click(f'{card} button:text-is("Approve")')          # twice is refused, and says why
    wait_until(lambda: alice.locator("[data-approval-error]").is_visible(), 30, "the refusal shown")
    assert "already approved" in alice.locator("[data-approval-error]").inner_text()

    bob.click(f'{card} button:text-is("Approve")')
    rows = f'article.in-progress[data-deployment="{dep_id}"] tr.step'
    bob.wait_for_selector(rows, timeout=DEADLINE_MS)          # the deploy runs: its steps appear, no reload
    assert bob.locator(card).count() == 0
    assert bob.evaluate("window.__not_reloaded") is True and alice.evaluate("window.__not_reloaded") is True
    assert_ok(cli.finish())
    assert state_of(served, dep_id) == "succeeded"
    decisions = httpx.get(f"{served.url}/api/v1/deployments/{dep_id}/approvals", timeout=10,
                          headers={"Authorization": f"Bearer {served.tokens['reader']}"}).json()["decisions"]
    assert [(d["approver"], d["decision"], d["via"]) for d in decisions] == [
        ("alice", "approve", "dashboard"), ("bob", "approve", "dashboard")]
    # the deployment's page shows the hostile subject and actor as text as well
    alice.goto(f"/deployments/{dep_id}")
    assert alice.locator("dl.facts").inner_text().count(HOSTILE) == 2
    no_script_ran(alice)


def test_a_reject_asks_for_a_reason_and_cancels_the_deployment(browser: Any, served: Served) -> None:
    alice = login(browser, served, served.tokens["alice"], viewport={"width": 390, "height": 844})
    dep_id = request_prod(served, served.tokens["deployer"])
    card = f'article[data-approval="{dep_id}"]'
    alice.wait_for_selector(card, timeout=DEADLINE_MS)
    # the deployment's own page has the same card (the notifications link there)
    alice.goto(f"/deployments/{dep_id}")
    assert "approved 0 of 2" in alice.locator(card).inner_text()
    assert serious(alice) == [] and fits(alice)
    alice.evaluate("window.__not_reloaded = true")
    alice.click(f'{card} summary')
    alice.click(f'{card} button:text-is("Reject")')           # no reason: the browser keeps the form
    assert state_of(served, dep_id) == "awaiting_approval"
    # and the server refuses one without a reason as well
    csrf = alice.locator('form[action="/logout"] input[name=csrf]').get_attribute("value")
    res = alice.request.post(f"{served.url}/actions/reject", form={"csrf": csrf, "deployment": dep_id},
                             headers={"Origin": served.url}, max_redirects=0)
    assert res.status == 400 and state_of(served, dep_id) == "awaiting_approval"
    alice.fill(f"{card} textarea", f"not during the sale {HOSTILE}")
    alice.click(f'{card} button:text-is("Reject")')
    alice.wait_for_selector('dd[data-state="cancelled"]', timeout=30_000)      # redrawn in place
    assert alice.evaluate("window.__not_reloaded") is True
    assert state_of(served, dep_id) == "cancelled"
    assert f"rejected by alice: not during the sale {HOSTILE}" in alice.locator("dl.facts").inner_text()
    assert alice.locator(card).count() == 0
    no_script_ran(alice)
    alice.goto("/")
    assert alice.locator(card).count() == 0
    # the notifications' logs link lands on the page's output
    alice.goto(f"/deployments/{dep_id}/logs")
    assert alice.url.endswith(f"/deployments/{dep_id}#output-h")
