"""The web UI in a real browser: Debian's Chromium driven by playwright (never `playwright install`).

Loads the page, searches, asks in fast mode with SmolLM2-135M and sees tokens stream in, hovers a
sentence and sees its supporting span, hovers and focuses a citation chip, follows it, checks 380 px
and dark mode, starts a crawl job and watches it finish, and sees a hostile page title escaped.
Screenshots go to $FATHOM_TEST_ARTIFACTS (default: the test's tmp dir); with FATHOM_UPDATE_DOCS=1
the answering page is also saved as docs/screenshot-answer.png."""
from __future__ import annotations

import dataclasses
import os
import shutil
import urllib.parse

import pytest

from webserver import XSS_PAGE, XSS_TITLE, running_server

CHROMIUM = "/usr/lib/chromium/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# FATHOM_BROWSER_MODEL=qwen2.5-coder-0.5b makes the docs screenshot with the real fast model
MODEL = os.environ.get("FATHOM_BROWSER_MODEL", "smollm2-135m")
QUESTIONS = ("How do I prune tomatoes?", "How deep should tomato seedlings be planted?",
             "How often should the compost heap be turned?", "When should vegetables be watered?")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def artifacts(tmp_path):
    d = os.environ.get("FATHOM_TEST_ARTIFACTS") or str(tmp_path)
    os.makedirs(d, exist_ok=True)
    return d


def test_search_answer_support_citations_jobs_and_escaping_in_chromium(browser, artifacts, tmp_path, site_url,
                                                                       embedder):
    from fathom import AnswerConfig, Engine

    engine = Engine(str(tmp_path / "data"), embedder=embedder)
    engine = Engine(engine.data_dir, embedder=embedder, config=dataclasses.replace(engine.config, answer=AnswerConfig(
        fast_model=MODEL, slow_model=MODEL, fast_max_tokens=60 if MODEL == "smollm2-135m" else 160,
        slow_max_tokens=60)))
    engine.crawl([site_url + "docs/index.html"])
    engine.index()
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "beets.html").write_text(XSS_PAGE)

    with running_server(engine) as base:
        context = browser.new_context(viewport={"width": 1100, "height": 900}, color_scheme="light")
        page = context.new_page()
        dialogs, console_errors = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))

        # the empty search page; "/" focuses the box
        page.goto(base + "/")
        page.locator("body").click(position={"x": 5, "y": 300})
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "q"

        # search: results appear with the page, then the answer streams in
        page.keyboard.type("How do I prune tomatoes?")
        page.check("input[name=mode][value=fast]")
        page.keyboard.press("Enter")
        page.wait_for_selector(".hit")
        assert page.locator(".hit").count() >= 3
        assert page.locator(".hit-title").first.text_content() == "Growing Tomatoes"
        assert page.locator(".snippet mark").count() > 0
        # a small model's draft may fail verification (then the page abstains): that card is
        # checked, and the next question tried, until one answer has supported sentences
        for n, question in enumerate(QUESTIONS):
            if n:
                page.goto(base + "/?" + urllib.parse.urlencode({"q": question, "mode": "fast"}))
            page.wait_for_selector("#answer[data-done='1']", timeout=180_000)
            answer = page.locator("#answer")
            assert int(answer.get_attribute("data-tokens") or 0) > 0, "no tokens streamed"
            assert answer.get_attribute("data-first-token-ms")
            page.screenshot(path=os.path.join(artifacts, f"answer-{n}.png"), full_page=True)
            if page.locator(".abstain").count() == 0:
                break
            card = page.locator(".abstain").text_content()
            assert "don't answer" in card and question in card
            assert page.locator("#answer-sources li").count() >= 1  # the closest passages that missed
        else:
            pytest.fail(f"every question abstained: {QUESTIONS}")

        # sentence support: hovering a sentence shows the exact supporting span of its source
        sent = page.locator(".sent").first
        sent.hover()
        assert page.locator("#evidence").is_visible()
        mark = page.locator("#evidence .passage mark")
        assert mark.count() == 1 and len(mark.text_content()) > 10
        status = sent.get_attribute("data-status")
        if status != "supported":
            assert sent.locator(f".badge.{status}").is_visible()
        page.screenshot(path=os.path.join(artifacts, "answer-support.png"), full_page=True)
        if os.environ.get("FATHOM_UPDATE_DOCS"):
            os.makedirs(os.path.join(REPO, "docs"), exist_ok=True)
            shutil.copy(os.path.join(artifacts, "answer-support.png"), os.path.join(REPO, "docs", "screenshot-answer.png"))

        # keyboard focus on a sentence does the same
        page.mouse.move(5, 5)
        page.locator(".sent").last.focus()
        assert page.locator("#evidence .passage mark").count() == 1

        # citation chip: the supporting snippet on hover and on keyboard focus, then follow the link
        chip = page.locator(".chip").first
        tip = page.locator(".cite .tip").first
        assert not tip.is_visible()
        chip.hover()
        assert tip.is_visible() and len(tip.text_content()) > 20
        page.mouse.move(5, 5)
        chip.focus()
        assert tip.is_visible()
        href = chip.get_attribute("href")
        assert href.startswith(site_url)
        chip.click()
        page.wait_for_load_state()
        assert page.url == href
        page.go_back()
        page.wait_for_selector(".hit")

        # 380 px wide: nothing overflows sideways; dark mode follows the system
        page.set_viewport_size({"width": 380, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 380
        page.screenshot(path=os.path.join(artifacts, "narrow-380.png"), full_page=True)
        page.emulate_media(color_scheme="dark")
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(x) for x in bg[bg.index("(") + 1:bg.index(")")].split(",")[:3]) < 150, bg
        page.screenshot(path=os.path.join(artifacts, "dark-380.png"), full_page=True)
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 1100, "height": 900})

        # sources page: start a crawl + index job and watch its progress finish
        page.goto(base + "/sources")
        assert page.locator("table.outcomes tr").count() > 3
        page.fill("#seeds", str(hostile))
        page.fill("#max_pages", "5")
        page.click("#job-form button")
        page.wait_for_selector("#job-progress:not([hidden])")
        page.wait_for_selector("#job-progress[data-done='1']", timeout=180_000)
        assert "ok" in page.get_attribute("#job-progress", "class"), page.text_content("#job-progress")
        assert page.text_content("#job-progress .job-line").startswith("Done.")
        page.screenshot(path=os.path.join(artifacts, "sources-job.png"), full_page=True)

        # the hostile page's title shows as text, and nothing ran
        page.goto(base + "/?q=beetroot+cool+weather&mode=fast")
        page.wait_for_selector(".hit")
        assert page.locator(".hit-title").first.text_content() == XSS_TITLE
        page.wait_for_selector("#answer[data-done='1']", timeout=180_000)
        page.screenshot(path=os.path.join(artifacts, "escaped.png"), full_page=True)
        assert dialogs == [], dialogs
        assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
        context.close()
