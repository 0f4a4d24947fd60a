"""End to end in a real headless Chromium (Debian's package; Playwright never downloads a browser):
upload a case by the page, review with the keyboard alone, open the report. Screenshots go to
$LEUKODX_SCREENSHOTS (default: the test's temporary folder)."""
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from leukodx.serve.app import create_app
from tests.conftest import rgb, shared

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXE = Path(__file__).parent / "assets" / "axe-4.14.1.min.js"  # axe-core (MPL-2.0), vendored: no download


def accessibility_problems(page) -> list[str]:
    """axe-core's WCAG 2 A / AA rules on the page as it is now; one line per violation."""
    page.add_script_tag(path=str(AXE))
    res = page.evaluate("axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])}" for v in res["violations"]]


def browser_or_skip():
    if CHROMIUM is None:
        if os.environ.get("LEUKODX_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (apt-get install chromium)")
        pytest.skip("no chromium on this machine")
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(tmp_path):
    import uvicorn
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(tmp_path / "data"), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def test_upload_review_and_report_in_chromium(server, tmp_path):
    pw = browser_or_skip()
    shots = Path(os.environ.get("LEUKODX_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    files = [next((shared("pbc192") / c).iterdir()) for c in ("neutrophil", "lymphocyte")]
    rgb(3, 80).save(tmp_path / "noise.png")
    files.append(tmp_path / "noise.png")
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(server + "/")
        page.screenshot(path=str(shots / "1_home.png"), full_page=True)
        assert accessibility_problems(page) == []
        page.fill("#name", "case A")
        page.select_option("#model", "all")
        assert not page.is_visible("#five")  # the five-part limit is for the WBC model only
        page.select_option("#model", "wbc")
        page.check("#five")
        page.set_input_files("#files", [str(f) for f in files])
        page.click("#go")
        page.wait_for_url("**/cases/*", timeout=60_000)
        page.wait_for_selector("tbody tr")
        assert page.locator("tbody tr").count() == 3
        assert "refer" in page.locator("tbody tr").nth(2).inner_text()  # the noise image is referred
        assert "Answers limited to: basophil, eosinophil, lymphocyte, monocyte, neutrophil" in page.inner_text("main")
        # keyboard only: first row has focus; accept it, move on, open the overlay, correct the second
        page.keyboard.press("a")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('Saved')")
        page.keyboard.press("j")
        page.keyboard.press("o")
        page.wait_for_selector("tbody tr:nth-child(2) img.overlay:not([hidden])")
        page.wait_for_function("document.querySelector('tbody tr:nth-child(2) img.overlay').naturalWidth > 0")
        page.keyboard.press("c")
        page.keyboard.press("End")   # last class in the list
        page.keyboard.press("Tab")   # to Save
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelectorAll('td.rev').length == 3 && "
                               "document.querySelectorAll('td.rev')[1].textContent.includes('(reviewer)')")
        page.screenshot(path=str(shots / "2_case.png"), full_page=True)
        case_url = page.url
        assert accessibility_problems(page) == []
        page.click("text=Case report")
        page.wait_for_selector("h1")
        text = page.inner_text("main")
        assert "Case report: case A" in text and "3 images, 2 reviewed" in text and "Answers limited to" in text
        page.screenshot(path=str(shots / "3_report.png"), full_page=True)
        assert accessibility_problems(page) == []
        page.goto(case_url)  # adapt the model to this lab from the two reviewed cells, then find it on the upload page
        assert "2 reviewed" in page.inner_text("main")
        page.fill("#adapt-name", "ourlab")
        page.click("#adapt button")
        page.wait_for_function("document.querySelector('#adapt-status').textContent.startsWith('Saved')", timeout=120_000)
        status = page.inner_text("#adapt-status")  # the unreviewed noise image fails the image checks
        assert "adapted on 2 reviewed cells, then on 0 of the case's 0 unreviewed cells that pass the image checks (1 more failed them)" in status
        assert "Outside this case's limit, so lowered: erythroblast, ig." in status  # platelet was reviewed: it has a cell
        assert "review a few cells of every class" not in status  # the limit says which classes the lab sees
        assert "no reviewed cells): basophil, eosinophil, lymphocyte, monocyte." in status  # in the case's five-part limit
        assert page.input_value("#fix" + page.locator("tbody tr").nth(1).get_attribute("data-id")) == "platelet"  # the review, not the model
        page.screenshot(path=str(shots / "4_adapted.png"), full_page=True)
        assert accessibility_problems(page) == []
        page.click("#adapt-status >> text=upload page")
        page.wait_for_selector("#model")
        assert "ourlab: adapted on 2 cells" in page.inner_text("#model")
        page.select_option("#model", "ourlab")
        assert page.is_visible("#five")  # an adapted WBC model keeps the five-part box
        page.screenshot(path=str(shots / "5_home_after_adapting.png"), full_page=True)
        assert accessibility_problems(page) == []
        page.once("dialog", lambda d: d.accept())  # nothing has used it yet, so it can be deleted
        page.click("text=Delete ourlab")
        page.wait_for_function("!document.querySelector('#model').textContent.includes('ourlab')")
        assert "Models adapted here" not in page.inner_text("main")
        page.goto(server + "/login")
        assert accessibility_problems(page) == []
        browser.close()
