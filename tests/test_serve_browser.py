"""The page in a real headless Chromium: ask, watch the answer stream in with a citation, upload, see it listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _serve_util import CitingGenerator, live_server, make_kb, make_settings
from ragtune.serve import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Chromium: apt-get install chromium chromium-driver (scripts/test.sh does this)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (dev extra)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def test_ask_compare_upload_in_the_browser(browser, tmp_path, tiny_embedder_dir):
    settings = make_settings(tiny_embedder_dir)
    kb = make_kb(tmp_path / "kb", settings)
    reports = tmp_path / "report"
    reports.mkdir()
    (reports / "index.html").write_text("<h1>Evaluation</h1>")
    app = create_app(kb, base=CitingGenerator(), finetuned=CitingGenerator(), settings=settings,
                     report_dir=reports, api_key="")
    with live_server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("#configs input[value='rag']")
        assert page.is_visible("#report-link")

        # Ask two configurations side by side.
        page.check("#configs input[value='finetuned+rag']")
        page.fill("#question", "How long is the Zorblax warranty?")
        page.click("#ask")
        page.wait_for_selector(".answer[data-config='rag'].done", timeout=30_000)
        page.wait_for_selector(".answer[data-config='finetuned+rag'].done", timeout=30_000)
        card = page.locator(".answer[data-config='rag']")
        assert card.locator(".text").inner_text().endswith("[1]")
        cite = card.locator("a.cite")
        assert cite.count() == 1
        source = card.locator(".citations .source").first.inner_text()
        assert source.endswith("zorblax.md")
        cite.click()  # opens the retrieved passages and highlights passage 1
        focused = card.locator(".retrieved li.focus")
        focused.wait_for()
        assert "Zorblax" in focused.inner_text()
        assert page.locator(".answer").count() == 2

        # Upload a file and watch it reach the sources list.
        note = tmp_path / "vantor.md"
        note.write_text("The Vantor drone flies for 31 minutes.\n")
        page.set_input_files("#file-input", str(note))
        page.click("#upload")
        page.wait_for_selector("#jobs li[data-status='done']", timeout=60_000)
        page.wait_for_selector("#sources li:has-text('uploads/vantor.md')", timeout=10_000)
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
        assert errors == []
        page.close()


def test_the_page_says_which_contestant_answers(browser, tmp_path, tiny_embedder_dir):
    """`serve --choice`: one configuration, named after the bake-off's contestant, and the page says so."""
    from ragtune.winner import Winner

    settings = make_settings(tiny_embedder_dir)
    kb = make_kb(tmp_path / "kb", settings)
    winner = Winner(tmp_path, "raft", "raft", "tiny", "raft", "kb", why="recommended: raft")
    app = create_app(kb, base=CitingGenerator(), settings=settings, api_key="", winner=winner)
    with live_server(app) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#configs input[value='raft']")
        assert "answering as the bake-off's raft" in page.inner_text("#status")
        assert page.locator("#configs input").count() == 1
        page.fill("#question", "How long is the Zorblax warranty?")
        page.click("#ask")
        page.wait_for_selector(".answer[data-config='raft'].done", timeout=30_000)
        card = page.locator(".answer[data-config='raft']")
        assert card.locator(".badge").inner_text() == "RAG" and card.locator(".text").inner_text().endswith("[1]")
