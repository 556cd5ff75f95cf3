"""The web page in a headless system Chromium or Chrome, driven by Playwright: with JS and without.

Debian has a `chromium` package (`make system-deps` installs it); GitHub's Ubuntu runners have none but ship
Google Chrome, so the first of `BROWSER_NAMES` on PATH is used.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from workload.serving.app import create_app, model_holder

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def find_browser(path: str | None = None) -> str | None:
    """The first of `BROWSER_NAMES` on `path` (default: $PATH), or None."""
    return next(filter(None, (shutil.which(name, path=path) for name in BROWSER_NAMES)), None)


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ((), None),
        (("google-chrome-stable",), "google-chrome-stable"),
        (("google-chrome", "google-chrome-stable", "chromium-browser"), "chromium-browser"),
        (BROWSER_NAMES, "chromium"),
    ],
)
def test_find_browser_takes_the_first_name_on_path(tmp_path, installed, expected):
    for name in installed:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    found = find_browser(str(tmp_path))
    assert (found and Path(found).name) == expected


@pytest.fixture(scope="module")
def page_url(tiny_bundle):
    app = create_app({"MODEL_URI": str(tiny_bundle)})
    assert model_holder(app).load_once(), model_holder(app).reason
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        pytest.skip(f"no browser on PATH: looked for {', '.join(BROWSER_NAMES)} (`make system-deps` installs chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def csp_violations(page) -> list[str]:
    """Console messages about the Content-Security-Policy, collected from now on (a blocked inline script or
    style, or a fetch to another origin, shows up here)."""
    violations: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
    return violations


@pytest.mark.integration
def test_typing_a_review_shows_label_and_score(browser, page_url, tmp_path):
    page = browser.new_page()
    violations = csp_violations(page)
    response = page.goto(page_url)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#review-text", "The movie was amazing!")
    with page.expect_response(lambda r: r.url.endswith("/predict") and r.status == 200):
        page.click("#submit")
    page.wait_for_selector("#label")
    assert page.inner_text("#label") == "positive"
    assert 0.5 < float(page.inner_text("#score")) <= 1.0
    assert page.url == page_url, "with JS on the page classifies in place, without a form POST"
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") != "none", "style.css applies"
    assert violations == [], "the page must work under its strict CSP"
    screenshot = tmp_path / "page-js.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot (JS on): {screenshot}")
    page.close()


@pytest.mark.integration
def test_the_form_works_with_javascript_off(browser, page_url, tmp_path):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    violations = csp_violations(page)
    page.goto(page_url)
    page.fill("#review-text", "A dull, boring waste of two hours.")
    with page.expect_navigation():
        page.click("#submit")
    assert page.inner_text("#label") == "negative"
    assert 0.0 <= float(page.inner_text("#score")) < 0.5
    assert page.input_value("#review-text") == "A dull, boring waste of two hours."
    assert violations == [], "the page (and its form-action) must work under its strict CSP"
    screenshot = tmp_path / "page-no-js.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot (JS off): {screenshot}")
    context.close()
