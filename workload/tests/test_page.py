"""The web page in headless Chromium (Debian's `chromium`, driven by Playwright): with JS and without."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from workload.api import create_app, model_holder

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def page_url(tiny_bundle):
    app = create_app({"MODEL_URI": str(tiny_bundle)})
    assert model_holder(app).wait_until_ready(timeout=60), model_holder(app).reason
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (`make system-deps` or `apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def test_typing_a_review_shows_label_and_score(browser, page_url, tmp_path):
    page = browser.new_page()
    page.goto(page_url)
    page.fill("#review-text", "The movie was amazing!")
    with page.expect_response(lambda r: r.url.endswith("/predict") and r.status == 200):
        page.click("#submit")
    page.wait_for_selector("#label")
    assert page.inner_text("#label") == "positive"
    assert 0.5 < float(page.inner_text("#score")) <= 1.0
    assert page.url == page_url, "with JS on the page classifies in place, without a form POST"
    screenshot = tmp_path / "page-js.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot (JS on): {screenshot}")
    page.close()


def test_the_form_works_with_javascript_off(browser, page_url, tmp_path):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(page_url)
    page.fill("#review-text", "A dull, boring waste of two hours.")
    with page.expect_navigation():
        page.click("#submit")
    assert page.inner_text("#label") == "negative"
    assert 0.0 <= float(page.inner_text("#score")) < 0.5
    assert page.input_value("#review-text") == "A dull, boring waste of two hours."
    screenshot = tmp_path / "page-no-js.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot (JS off): {screenshot}")
    context.close()
