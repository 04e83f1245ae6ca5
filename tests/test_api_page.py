"""The web page in a real headless chromium (Debian's chromium and chromium-driver, driven by
selenium): upload through the page, watch the bar reach 100 %, read the text, use a token."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from ocr_daemon.service.procs import free_port
from tests.support.pdfs import drawn_page, make_text_pdf, page_text

from .api_support import api_env, wait_api
from .conftest import Env

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="needs chromium and chromium-driver (bash scripts/setup --test installs them)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless chromium with a fresh profile and nothing reaching out to the network."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,860",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=CHROMEDRIVER or "chromedriver"))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def row_of(driver: Any, name: str) -> Any:
    for row in driver.find_elements(By.CSS_SELECTOR, "#docs tbody tr"):
        if row.find_element(By.CSS_SELECTOR, "td.name").text.startswith(name):
            return row
    return None


def wait_row(driver: Any, name: str, state: str, timeout: float = 120) -> Any:
    def ready(d: Any) -> Any:
        row = row_of(d, name)
        ok = row is not None and row.get_attribute("data-state") == state \
            and row.get_attribute("data-ended") == "1"
        return row if ok else False
    # a row's cells are redrawn at every event: a cell read during a redraw is looked up again
    return WebDriverWait(driver, timeout, 0.2, ignored_exceptions=[
        StaleElementReferenceException]).until(ready, f"{name} to be {state}")


def test_upload_through_the_page_reaches_100_and_shows_its_text(
        make_env: Any, browser: Any, tmp_path: Path) -> None:
    env: Env = make_env()
    port = free_port()
    api_env(env, port)
    proc = env.run_daemon()
    base = f"http://127.0.0.1:{port}"
    wait_api(base, proc)
    browser.get(base + "/")
    WebDriverWait(browser, 30).until(
        ec.text_to_be_present_in_element((By.ID, "health"), "worker"))
    pages = [page_text(n) for n in (1, 2, 3)]
    report = make_text_pdf(tmp_path / "quarterly-report.pdf", pages)
    scan = tmp_path / "receipt-scan.png"
    drawn_page("Receipt 0815\nTwo coffees, one croissant\nTotal 9.40").save(scan, dpi=(150, 150))
    broken = tmp_path / "damaged.pdf"
    # ends as a PDF must (else it would be truncated_document), but cannot be read
    broken.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n"
                       b"<< /Root 1 0 R >>\nstartxref\n9\n%%EOF\n")
    chooser = browser.find_element(By.ID, "file")
    chooser.send_keys("\n".join(str(p) for p in (report, scan, broken)))

    row = wait_row(browser, "quarterly-report.pdf", "completed")
    bar = row.find_element(By.CSS_SELECTOR, ".bar")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert row.find_element(By.CSS_SELECTOR, ".pct").text == "100 %"
    row.find_element(By.CSS_SELECTOR, "a.text-link").click()
    WebDriverWait(browser, 20).until(
        ec.text_to_be_present_in_element((By.ID, "viewer-text"), "Page 3 of the test document"))
    shown = browser.find_element(By.ID, "viewer-text").text
    assert all(p.split("\n")[0] in shown for p in pages)

    failed = wait_row(browser, "damaged.pdf", "failed")
    assert "corrupt_document" in failed.find_element(By.CSS_SELECTOR, ".error").text
    assert failed.find_element(By.CSS_SELECTOR, "button.reprocess")
    receipt = wait_row(browser, "receipt-scan.png", "completed")
    assert receipt.find_element(By.CSS_SELECTOR, "td.engine").text == "auto → tesseract"
    browser.execute_script("window.scrollTo(0, 0)")
    shot = Path(os.environ.get("OCR_DAEMON_SCREENSHOT", tmp_path / "api-page.png"))
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_page_asks_for_the_token_once_and_keeps_it_for_the_session(
        make_env: Any, browser: Any, tmp_path: Path) -> None:
    env: Env = make_env()
    port = free_port()
    token = "page-token-0123456789abcdef"
    api_env(env, port, tokens=[token])
    proc = env.start("api")  # no workers: the document stays queued
    base = f"http://127.0.0.1:{port}"
    wait_api(base, proc)
    browser.get(base + "/")
    WebDriverWait(browser, 30).until(ec.alert_is_present()).send_keys(token)
    browser.switch_to.alert.accept()
    source = make_text_pdf(tmp_path / "with-token.pdf", [page_text(1)])
    browser.find_element(By.ID, "file").send_keys(str(source))

    def listed(d: Any) -> Any:
        row = row_of(d, "with-token.pdf")
        return row if row is not None and row.get_attribute("data-state") == "queued" else False
    patient = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
    patient.until(listed, "the upload to be listed as queued")
    assert browser.execute_script(
        "return sessionStorage.getItem('ocr-daemon-token')") == token
    browser.refresh()  # same session: no second question
    patient.until(listed, "the list after a reload, without a prompt")
    with httpx.Client(base_url=base) as client:
        items = client.get("/v1/documents",
                           headers={"Authorization": f"Bearer {token}"}).json()["items"]
    assert [i["name"] for i in items] == ["with-token.pdf"]
