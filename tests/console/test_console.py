"""The web console (/console) in a real headless Chromium (Debian's, driven by Playwright)
against a real stack with evolution: sign in, search, a memory, its graph, a revert, a
delete with its receipt, and content that would be HTML if the page ever parsed it.
Screenshots go to $AMEM_ARTIFACTS (default tests/console/artifacts/)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amem.devstack import LocalStack
from tests.conftest import KEY_A, client_for

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("AMEM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("AMEM_ARTIFACTS", Path(__file__).parent / "artifacts"))
XSS = "<img src=x onerror=\"document.title='pwned'\"> and <script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def console_stack(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """A stack with (offline) evolution, so memories get links and history; the session
    stack's embedding service is shared."""
    s = LocalStack.for_tenants(
        tmp_path_factory.mktemp("console"), {"tenant-a": KEY_A}, embedding_from=stack
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def memories(console_stack: LocalStack) -> dict[str, dict]:
    """A little memory of one user, evolved: linked notes with history."""
    user = f"console-{uuid.uuid4().hex[:8]}"
    with client_for(console_stack, KEY_A) as api:
        made = {}
        for name, content in [
            ("rust", "Ana is learning Rust for the billing service rewrite"),
            ("rust2", "Ana says Rust's borrow checker slowed the billing rewrite down"),
            ("coffee", "Ana drinks her coffee black, no sugar"),
            ("xss", XSS),
        ]:
            r = api.post(
                "/v1/memories",
                json={"content": content, "user_id": user},
                params={"wait": "true", "timeout": 30},
            )
            assert r.status_code == 201, r.text
            made[name] = r.json()
        made["rust2"] = api.get(f"/v1/memories/{made['rust2']['id']}").json()
    assert made["rust2"]["status"] == "done" and made["rust2"]["evolution_history"]
    return made


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: make installs Debian's (scripts/browser-up.sh)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, console_stack: LocalStack, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.goto(f"{console_stack.gateway_url}/console")
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
    # No script error, no CSP violation and no missing file on any view (a 409 is an answer
    # the page shows in words; the browser logs it all the same).
    errors = [e for e in errors if "status of 409" not in e]
    assert errors == [], errors


def snapshot(page, name: str) -> None:
    """A screenshot of a view, for docs/ (copy them there when the console changes)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png")


def showing(page, content: str) -> None:
    """Wait until the memory view shows the memory with this content (a hash change renders
    the new view after the old one is still on screen)."""
    page.wait_for_function(
        "(c) => document.getElementById('memory-content')?.textContent === c", arg=content
    )


def sign_in(page) -> None:
    page.fill("#key", KEY_A)
    page.click("#sign-in-form button")
    page.wait_for_selector("#who:has-text('tenant-a')")


def test_the_console_is_served_with_a_strict_policy_and_no_key(console_stack: LocalStack):
    with httpx.Client(base_url=console_stack.gateway_url) as anon:
        redirect = anon.get("/console")
        assert redirect.status_code == 308 and redirect.headers["location"] == "console/"
        page = anon.get("/console/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        script_src = policy.split("script-src ")[1].split(";")[0]
        assert script_src == "'self'"  # no inline script, no other origin
        assert "<script>" not in page.text  # no inline script
        assert anon.get("/console/vendor/cytoscape.min.js").status_code == 200
        assert anon.get("/v1/usage").status_code == 401  # the data is not


def test_sign_in_search_and_sign_out(page, memories):
    assert page.is_visible("#sign-in") and not page.is_visible("#nav")
    sign_in(page)
    page.fill("input[name=query]", "what is Ana learning?")
    page.select_option("select[name=mode]", "hybrid")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("tr.hit")
    assert "Rust" in page.inner_text("#results")
    snapshot(page, "console-search")
    assert page.evaluate("() => sessionStorage.length") == 1
    assert page.evaluate("() => localStorage.length") == 0  # nothing kept past the tab
    assert KEY_A not in page.url
    page.click("#sign-out")
    assert page.is_visible("#sign-in")
    assert page.evaluate("() => sessionStorage.length") == 0


def test_a_memory_its_links_and_its_graph(page, memories, console_stack):
    sign_in(page)
    rust2 = memories["rust2"]
    page.goto(f"{console_stack.gateway_url}/console/#/memory/{rust2['id']}")
    page.wait_for_selector("#memory-content")
    assert page.inner_text("#memory-content") == rust2["content"]
    rust = memories["rust"]
    assert rust["id"] in rust2["links"], "offline evolution linked the two notes about Rust"
    linked = [rust["id"]]
    assert page.locator(f"a.chip[href='#/memory/{linked[0]}']").count() >= 1
    # The linked memory shows this one among its back-links.
    page.goto(f"{console_stack.gateway_url}/console/#/memory/{linked[0]}")
    showing(page, rust["content"])
    page.wait_for_selector(f"dd a.chip[href='#/memory/{rust2['id']}']")
    page.goto(f"{console_stack.gateway_url}/console/#/memory/{rust2['id']}")
    showing(page, rust2["content"])
    page.click("text=Graph")
    page.wait_for_function("() => window.amemGraph && window.amemGraph.nodes().length > 1")
    nodes = page.evaluate("() => window.amemGraph.nodes().map(n => n.id())")
    assert rust2["id"] in nodes and set(linked) <= set(nodes)
    snapshot(page, "console-graph")
    # Clicking a node moves the graph there.
    page.evaluate(f"() => window.amemGraph.getElementById('{linked[0]}').emit('tap')")
    page.wait_for_function(f"() => location.hash === '#/graph/{linked[0]}'")


def test_a_history_entry_is_reverted(page, memories, console_stack):
    sign_in(page)
    rust2 = memories["rust2"]
    [entry] = [e for e in rust2["evolution_history"] if e["kind"] == "evolve"]
    page.goto(f"{console_stack.gateway_url}/console/#/history/{rust2['id']}")
    item = page.locator(f"li[data-entry='{entry['id']}']")
    item.wait_for()
    shown = item.inner_text()
    assert "[object" not in shown
    for field, value in entry["after"].items():  # each field's values, before and after
        assert field in shown
        if isinstance(value, str) and value:
            assert value in shown
    item.locator("button:has-text('Revert')").click()
    page.wait_for_selector("li.entry.revert")
    snapshot(page, "console-history")
    with client_for(console_stack, KEY_A) as api:
        after = api.get(f"/v1/memories/{rust2['id']}").json()
    assert after["evolution_history"][-1]["reverts"] == entry["id"]
    for field, value in entry["before"].items():
        assert after[field] == value


def test_delete_shows_the_receipt(page, memories, console_stack):
    sign_in(page)
    coffee = memories["coffee"]
    page.goto(f"{console_stack.gateway_url}/console/#/memory/{coffee['id']}")
    page.wait_for_selector("#memory-content")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button.danger")
    page.wait_for_selector("#receipt .receipt")
    assert coffee["id"] in page.inner_text("#receipt")
    with client_for(console_stack, KEY_A) as api:
        assert api.get(f"/v1/memories/{coffee['id']}").status_code == 404


def test_content_is_text_never_html(page, memories, console_stack):
    sign_in(page)
    xss = memories["xss"]
    page.goto(f"{console_stack.gateway_url}/console/#/memory/{xss['id']}")
    page.wait_for_selector("#memory-content")
    assert page.inner_text("#memory-content") == XSS
    assert page.locator("#memory-content img, #memory-content script").count() == 0
    page.click("text=Browse")
    page.wait_for_selector("td.content")
    assert page.title() == "amem console"  # no handler ran


def test_a_revert_the_memory_moved_past_is_refused_in_words(page, memories, console_stack):
    sign_in(page)
    rust = memories["rust"]
    with client_for(console_stack, KEY_A) as api:
        current = api.get(f"/v1/memories/{rust['id']}").json()
        [entry] = [e for e in current["evolution_history"] if e["kind"] == "evolve"]
        changed = sorted(entry["after"])[0]
        value = ["edited"] if isinstance(current[changed], list) else "edited by hand"
        assert api.patch(f"/v1/memories/{rust['id']}", json={changed: value}).status_code == 200
    page.goto(f"{console_stack.gateway_url}/console/#/history/{rust['id']}")
    item = page.locator(f"li[data-entry='{entry['id']}']")
    item.locator("button:has-text('Revert')").click()
    outcome = item.locator(".outcome")
    outcome.wait_for()
    page.wait_for_function(
        "(id) => document.querySelector(`li[data-entry='${id}'] .outcome`).textContent",
        arg=entry["id"],
    )
    assert outcome.inner_text().startswith("Not reverted: the fields changed after this entry")
    assert changed in outcome.inner_text()
