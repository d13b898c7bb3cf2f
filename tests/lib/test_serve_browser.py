"""``toolkit serve`` in a real browser: Debian's chromium (``/usr/bin/chromium``, installed by ``.ci/run``)
driven by Playwright. Text queries in two languages, thumbnails that load, "more like this", an image
upload, the errors with their fix, the copy button, the token cookie, and a screenshot.

Set ``SERVE_SCREENSHOT=docs/serve.png`` to write the screenshot the README shows.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.lib.serve_helpers import MISSING_DOC, PASSWORD, URL_DOC, XSS_CAPTION, png, serve_env, start_app

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "browser-token-" + "Zq81kPm3"

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium "
                                       "(apt-get install chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site():
    from toolkit.serve import create_app

    env = serve_env()
    running = start_app(create_app(env.settings, embedder=env.embedder))
    yield running.url
    running.stop()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = context.new_page()
    page.set_default_timeout(15_000)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(site) else outside.append(r.url))
    page.goto(site + "/")
    page.wait_for_selector("#label option[value='animal']", state="attached")
    yield page
    context.close()
    assert outside == [], f"the page asked for something outside the server: {outside}"


def search_text(page, text):
    page.fill("#q", text)
    page.click("#go")
    return wait_for_results(page)


def wait_for_results(page):
    page.wait_for_function("() => !document.body.dataset.busy && document.querySelectorAll('figure.hit').length")
    # Every thumbnail has loaded (a placeholder is an image too): complete with a real width.
    page.wait_for_function("() => [...document.querySelectorAll('figure.hit img')].every("
                           "i => i.complete && i.naturalWidth > 0)")
    return page.locator("figure.hit")


def test_text_queries_in_two_languages_show_thumbnails(page):
    hits = search_text(page, "a cat on a sofa")
    assert hits.count() == 11              # k=12 by default; 11 documents in the index
    assert page.text_content("#summary").startswith("text search on images")
    first = hits.first
    assert first.locator(".score").text_content().startswith("0.")
    assert first.locator(".caption").text_content()
    assert '"model_text": "a cat on a sofa"' in page.text_content("#request")
    # A real thumbnail (JPEG of an indexed photo), not only placeholders.
    widths = page.eval_on_selector_all("figure.hit img", "imgs => imgs.map(i => i.naturalWidth)")
    assert 256 in widths
    # Captions and ids are data: shown as text, never run as HTML; odd ids still find their thumbnail.
    assert page.locator(f"figure.hit[data-id='{MISSING_DOC}'] .caption").text_content() == XSS_CAPTION
    assert page.evaluate("window.pwned") is None
    assert page.eval_on_selector(f"figure.hit[data-id='{URL_DOC}'] img", "i => i.naturalWidth") == 96
    hits = search_text(page, "eine Katze auf dem Sofa")
    assert '"model_text": "eine Katze auf dem Sofa"' in page.text_content("#request")
    assert hits.count() == 11


def test_more_like_this_and_copy(page):
    hits = search_text(page, "a rocket")
    liked = hits.first.get_attribute("data-id")
    hits.first.locator("button.like").click()
    page.wait_for_function("() => document.querySelector('#summary').textContent.startsWith('like search')")
    hits = wait_for_results(page)
    shown = [hits.nth(i).get_attribute("data-id") for i in range(hits.count())]
    assert liked not in shown and len(shown) == 10
    assert f"# read the stored image_embedding of document {liked}" in page.text_content("#request")
    page.click("#devtools summary")          # the request sits in a closed <details> until asked for
    page.click("#copy")
    page.wait_for_function("() => document.querySelector('#copied').textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == page.text_content("#request")


def test_upload_an_image_then_filter_by_label(page, tmp_path):
    picture = tmp_path / "query.png"
    picture.write_bytes(png((230, 120, 30), (120, 90)))
    page.set_input_files("#image", str(picture))
    page.fill("#k", "4")
    page.click("#go")
    hits = wait_for_results(page)
    assert page.text_content("#summary").startswith("image search on images")
    assert hits.count() == 4
    assert "with the embedding of the upload query.png" in page.text_content("#request")
    page.select_option("#label", "animal")
    page.fill("#q", "cat")
    page.click("#go")
    page.wait_for_function("() => document.querySelector('#summary').textContent.startsWith('text search')")
    hits = wait_for_results(page)
    assert [hits.nth(i).get_attribute("data-id") for i in range(hits.count())] == ["cat"]


def test_errors_show_the_fix(page):
    page.fill("#q", "")
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])")
    assert "give exactly one of" in page.text_content("#error-message")
    assert "type a query" in page.text_content("#error-fix")
    page.fill("#q", "cat")
    page.check("#hybrid")
    page.check("#collapse")
    page.click("#go")
    wait_for_results(page)
    assert page.is_hidden("#error")
    assert page.text_content("#summary").startswith("text search on images · boosted_sum")


def test_screenshot(page, tmp_path):
    search_text(page, "a photo of a cat")
    page.click("#devtools summary")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    target = os.environ.get("SERVE_SCREENSHOT")
    if target:  # relative to the checkout (the tests run in a temporary working directory)
        shutil.copyfile(shot, Path(__file__).resolve().parents[2] / target)
    assert PASSWORD not in page.content()


def test_the_token_becomes_a_cookie_and_thumbnails_load_with_it(browser):
    from toolkit.serve import create_app

    env = serve_env()
    running = start_app(create_app(env.settings, embedder=env.embedder, token=TOKEN))
    context = browser.new_context()
    try:
        page = context.new_page()
        refused = page.goto(running.url + "/")
        assert refused.status == 401 and "access token" in page.content()
        page.goto(running.url + "/?token=" + TOKEN)
        assert page.url == running.url + "/"               # the token is gone from the address bar
        page.wait_for_selector("#label option[value='animal']", state="attached")
        search_text(page, "a cat")
        assert 256 in page.eval_on_selector_all("figure.hit img", "imgs => imgs.map(i => i.naturalWidth)")
        cookies = context.cookies()
        assert [c["httpOnly"] for c in cookies] == [True]
        assert TOKEN not in page.content() and PASSWORD not in page.content()
    finally:
        context.close()
        running.stop()
