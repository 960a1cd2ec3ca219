"""The chat page at `/` in a real browser: Playwright driving Debian's chromium against a real
`llamba serve` (the default model; greedy, so every answer is the same on every run)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import MODEL, SMOLLM2, missing, model_path
from tests.support.fixtures import MODELS_DIR
from tests.support.nginx import nginx_in_front
from tests.support.server import API_KEY, metrics, running_server, wait_until_idle

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as root, with no network: no sandbox, no background connections (they would be refused)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
USAGE = re.compile(r"^(\d+) tokens · [0-9.]+ tokens/s · (\d+) cached prompt tokens$")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (the test extras install it)")
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium (.ci/run installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server():
    with running_server("--parallel", "2") as base:
        yield base


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(180_000)  # a guard against a hang, not a speed check
    dialogs = []  # an alert() from anything a model wrote would land here
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    assert dialogs == []
    context.close()


def settled(page) -> None:
    """After a rendering frame and a task more: a request or dialog the page started is reported by now."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)))")


def generated(base: str, model: str) -> float:
    """llamba_generated_tokens_total for one model."""
    text = httpx.get(f"{base}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "llamba_generated_tokens_total" and model in s.labels.values())


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelector('#model').options.length > 0")


def settings(page, temperature: str = "0", max_tokens: str = "", system: str = "") -> None:
    page.click("#settings-toggle")
    page.fill("#temperature", temperature)
    page.fill("#max-tokens", max_tokens)
    page.fill("#system", system)
    page.click("#settings-toggle")


def ask(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def answer_to(page, question: str) -> tuple[str, str]:
    """Asks, and once the answer is whole: its text and its usage line."""
    ask(page, question)
    usage = wait_for_answer(page)
    return last_answer(page).locator(".content").text_content(), usage


def last_answer(page):
    return page.locator(".message.assistant").last


def wait_for_answer(page) -> str:
    """The usage line under the last answer, once it is there."""
    page.wait_for_function("() => [...document.querySelectorAll('.message.assistant .usage')].at(-1)?.textContent")
    return last_answer(page).locator(".usage").text_content()


def test_an_answer_grows_as_it_streams_then_shows_its_usage(page, server):
    open_page(page, server + "/")
    settings(page, max_tokens="48")
    # the answer's text length at every change of the conversation
    page.evaluate("""() => { window.lengths = []; new MutationObserver(() => {
        const answers = document.querySelectorAll('.message.assistant .content');
        if (answers.length) window.lengths.push(answers[answers.length - 1].textContent.length);
    }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true}); }""")
    ask(page, "Count from 1 to 30, separated by commas.")
    usage = wait_for_answer(page)
    tokens, cached = map(int, USAGE.match(usage).groups())
    lengths = page.evaluate("window.lengths")
    final = len(last_answer(page).locator(".content").text_content())
    growing = sorted({n for n in lengths if 0 < n < final})
    assert len(growing) >= 2, lengths  # several renderings before the whole answer
    assert 0 < tokens <= 48 and cached == 0
    assert page.locator(".message.user .content").text_content() == "Count from 1 to 30, separated by commas."


def test_stop_ends_a_long_answer_and_frees_the_server(page, server):
    open_page(page, server + "/")
    settings(page, max_tokens="2000")
    before = metrics(server)["llamba_generated_tokens_total"]
    ask(page, "Write a very long story about a dragon who learns to cook.")
    page.wait_for_function("() => document.querySelector('.message.assistant .content').textContent.length > 20")
    assert metrics(server)["llamba_requests_running"] == 1
    page.keyboard.press("Escape")
    assert wait_for_answer(page) == "stopped"
    after = wait_until_idle(server)
    assert after["llamba_requests_running"] == 0
    assert after["llamba_generated_tokens_total"] - before < 2000  # it ended before its max_tokens
    assert page.locator("#send").is_visible() and not page.locator("#stop").is_visible()


def test_conversations_outlive_a_reload_and_can_be_deleted(page, server):
    open_page(page, server + "/")
    settings(page, max_tokens="8")
    first_answer, _ = answer_to(page, "What is the capital of France?")
    page.reload()
    page.locator(".message.assistant").wait_for()
    assert page.locator(".message.user .content").text_content() == "What is the capital of France?"
    assert last_answer(page).locator(".content").text_content() == first_answer
    page.click("#new-chat")
    assert page.locator(".message").count() == 0
    answer_to(page, "Name a colour.")
    chats = page.locator("#chats li .open")
    assert chats.all_text_contents() == ["Name a colour.", "What is the capital of France?"]
    page.get_by_label("Delete chat: What is the capital of France?").click()
    page.reload()
    page.locator("#chats li").first.wait_for()
    assert page.locator("#chats li .open").all_text_contents() == ["Name a colour."]
    assert page.locator(".message.user .content").text_content() == "Name a colour."


def test_regenerate_and_edit_resend(page, server):
    open_page(page, server + "/")
    settings(page, max_tokens="6")
    answer, _ = answer_to(page, "Say hello.")
    page.get_by_role("button", name="Regenerate").click()
    wait_for_answer(page)
    assert page.locator(".message.assistant").count() == 1
    assert last_answer(page).locator(".content").text_content() == answer  # greedy: the same again
    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("Say goodbye.")
    page.locator(".message.user").get_by_role("button", name="Send").click()
    wait_for_answer(page)
    assert page.locator(".message.user .content").all_text_contents() == ["Say goodbye."]
    assert page.locator(".message.assistant").count() == 1


def test_what_a_model_writes_is_shown_as_text_and_never_runs(page, server):
    """HTML the default model writes (greedy, measured: an <img> with an onerror handler in a code
    block, then raw HTML outside one) and HTML in a stored conversation: shown as text, no script
    runs (the page fixture fails on any dialog), no image is fetched."""
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    open_page(page, server + "/")
    settings(page, max_tokens="80")
    ask(page, "Write an HTML img tag with src x and onerror alert(1), then a script tag that calls alert(2). No markdown.")
    wait_for_answer(page)
    content = last_answer(page).locator(".content")
    assert "<img src=" in content.text_content() and "onerror" in content.text_content()
    assert content.locator("img, script, [onerror]").count() == 0
    page.click("#new-chat")
    ask(page, "Complete the HTML page: <html><body><img src=x onerror=alert(1)>")
    wait_for_answer(page)
    content = last_answer(page).locator(".content")
    assert "<div" in content.text_content()  # raw HTML, outside a code block
    assert content.locator("div, img, script, a").count() == 0
    assert "<img src=x onerror=alert(1)>" in page.locator(".message.user .content").text_content()
    # whatever a model wrote, through the page's rendering of a stored conversation
    attack = ("<img src=x onerror=alert(1)> <script>alert(2)</script> <svg onload=alert(3)>\n\n**bold** "
              "[link](javascript:alert(4)) ![image](http://127.0.0.1:9/pixel.png)")
    page.evaluate("""attack => { localStorage.setItem('llamba.chats', JSON.stringify([{id: 'a', title: 't',
        messages: [{role: 'user', content: 'hi'}, {role: 'assistant', content: attack}]}]));
        localStorage.setItem('llamba.current', 'a'); }""", attack)
    page.reload()
    content = last_answer(page).locator(".content")
    content.wait_for()
    assert content.locator("img, script, svg, [onerror], [onload]").count() == 0
    assert content.locator("strong").text_content() == "bold"  # Markdown still renders
    assert "<img src=x onerror=alert(1)>" in content.text_content()
    assert not [a for a in content.locator("a").all() if "javascript" in (a.get_attribute("href") or "")]
    settled(page)
    assert not [url for url in requests if not url.startswith(server)], requests  # no image fetched


def test_the_page_asks_for_the_api_key(page):
    with running_server("--api-key", API_KEY) as base:
        page.goto(base + "/")
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        assert "API key" in page.locator("#key-message").text_content()
        page.fill("#key", "sk-wrong")
        page.click("#key-ok")
        page.wait_for_function("document.querySelector('#key-dialog').open && "
                               "document.querySelector('#key-message').textContent.includes('Incorrect API key')")
        page.fill("#key", API_KEY)
        page.click("#key-ok")
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        settings(page, max_tokens="4")
        assert USAGE.match(answer_to(page, "Hi")[1])
        assert httpx.get(base + "/").status_code == 200  # the page itself is public


def test_picking_a_folder_model_loads_it_and_answers_with_it(page):
    second = "synth-llama3-tiny-f32"
    with tempfile.TemporaryDirectory() as folder:
        os.symlink(model_path(SMOLLM2), Path(folder) / f"{MODEL}.gguf")
        os.symlink(MODELS_DIR / f"{second}.gguf", Path(folder) / f"{second}.gguf")
        with running_server("--models-dir", folder) as base:
            open_page(page, base + "/")
            options = page.locator("#model option").all_text_contents()
            assert f"{second} (not loaded)" in options, options
            page.evaluate("""() => { window.statuses = []; const status = document.getElementById('model-status');
                new MutationObserver(() => window.statuses.push(status.textContent))
                    .observe(status, {childList: true, characterData: true, subtree: true}); }""")
            page.select_option("#model", second)
            page.wait_for_function(f"[...document.querySelectorAll('#model option')].some(o => o.textContent === '{second}')")
            assert f"loading {second}…" in page.evaluate("window.statuses")  # said while it loaded
            assert page.locator("#model-status").text_content().startswith("loaded")
            cards = {m["id"]: m for m in httpx.get(base + "/v1/models").json()["data"]}
            assert cards[second]["meta"]["loaded"] is True
            settings(page, max_tokens="5")
            before = generated(base, second)
            tokens, _ = map(int, USAGE.match(answer_to(page, "Hello")[1]).groups())
            assert generated(base, second) - before == tokens  # counted for that model


def test_the_page_works_behind_nginx_at_a_sub_path(page, server, tmp_path):
    with nginx_in_front(server, tmp_path) as proxy:
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(proxy + "/llm")  # redirected to /llm/
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        settings(page, max_tokens="6")
        assert USAGE.match(answer_to(page, "Hi")[1])
        assert all(url.startswith(proxy + "/llm/") for url in requests[1:]), requests  # (after the redirect)
        assert any(url == proxy + "/llm/v1/chat/completions" for url in requests)


def test_the_page_fits_a_phone_and_every_control_is_labelled(page, server):
    page.set_viewport_size({"width": 375, "height": 700})
    open_page(page, server + "/")
    for label in ("Model", "System prompt", "Temperature", "Max tokens", "Message"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    settings(page, max_tokens="40")
    answer_to(page, "Write a Python function that adds two numbers.")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    for name in ("Send", "New chat", "Settings", "Edit", "Regenerate"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= 375, name
    page.fill("#prompt", "one")
    page.press("#prompt", "Shift+Enter")  # a new line, not a send
    page.keyboard.type("two")
    assert page.input_value("#prompt") == "one\ntwo" and page.locator(".message.user").count() == 1


def test_a_screenshot_of_an_exchange(page, server, tmp_path):
    """Written where LLAMBA_SCREENSHOT says (docs/chat-page.png, which the README shows, was made so)."""
    page.set_viewport_size({"width": 1100, "height": 700})
    open_page(page, server + "/")
    settings(page, max_tokens="120")
    answer_to(page, "Write a Python function that adds two numbers.")
    path = Path(os.environ.get("LLAMBA_SCREENSHOT") or tmp_path / "chat-page.png")
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_webui_leaves_the_root_404():
    with running_server("--no-webui") as base:
        assert httpx.get(base + "/").status_code == 404
        assert httpx.get(base + "/webui/chat.js").status_code == 404
        assert httpx.get(base + "/health").status_code == 200
    with running_server() as base:  # and by default the page and its files are there
        assert "<title>llamba</title>" in httpx.get(base + "/").text
        assert httpx.get(base + "/webui/vendor/purify.es.mjs").status_code == 200
