"""The web page in a real headless browser (Debian chromium + chromedriver, driven by selenium)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ._data import queries
from ._server import running_server

# COMPSCOPE_CHROMIUM / COMPSCOPE_CHROMEDRIVER point at other binaries (and let a test hide them)
CHROMIUM = os.environ.get("COMPSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("COMPSCOPE_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "search_screenshot.png"
MISSING = ("chromium/chromedriver not installed (apt-get install -y chromium chromium-driver): "
           f"{CHROMIUM}, {CHROMEDRIVER}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if _in_ci():  # CI claims the web page is tested: a missing browser is a failure there, not a skip
            pytest.fail(f"CI=true but {MISSING}")
        pytest.skip(MISSING)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,1000",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def url(index):
    from compscope.search import create_app

    with running_server(create_app(index)) as u:
        yield u


def _wait_status(drv, pred, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout).until(lambda d: pred(d.find_element("id", "status").text))
    return drv.find_element("id", "status").text


def _search(drv, query, mode):
    drv.find_element("css selector", f"input[name=mode][value={mode}]").click()
    box = drv.find_element("id", "query")
    box.clear()
    box.send_keys(query)
    drv.find_element("id", "search").click()


def test_search_page_shows_results_with_depictions(browser, url, index, tmp_path):
    drv = browser
    drv.get(url + "/")
    _wait_status(drv, lambda t: True, 5)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 30).until(lambda d: "molecules" in d.find_element("id", "info").text)
    q = queries()[3]
    _search(drv, q, "topk")
    _wait_status(drv, lambda t: "hits" in t or "Error" in t)
    ids = [e.text for e in drv.find_elements("css selector", ".hit .id")]
    assert ids == index.top_k(q, 20).ids
    WebDriverWait(drv, 30).until(lambda d: all(
        d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in d.find_elements("css selector", ".hit img")))
    # the docs screenshot is refreshed on request only, so a test run leaves the checkout unchanged
    shot = SCREENSHOT if os.environ.get("COMPSCOPE_UPDATE_SCREENSHOT") else tmp_path / "search.png"
    drv.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # substructure with paging: page 2 continues page 1
    _search(drv, "c1ccncc1", "substructure")
    _wait_status(drv, lambda t: "hits" in t or "Error" in t)
    page1 = [e.text for e in drv.find_elements("css selector", ".hit .id")]
    drv.find_element("id", "next").click()
    _wait_status(drv, lambda t: True)
    WebDriverWait(drv, 30).until(lambda d: d.find_element("id", "page-label").text.startswith("results 21"))
    page2 = [e.text for e in drv.find_elements("css selector", ".hit .id")]
    assert page1 + page2 == index.substructure("c1ccncc1", limit=40).ids

    # a bad query shows the server's message and the page keeps working
    _search(drv, "C1CC(", "similarity")
    assert "invalid SMILES" in _wait_status(drv, lambda t: "Error" in t)
    smi = index.top_k(q, 1).smiles[0]
    _search(drv, smi, "exact")
    _wait_status(drv, lambda t: "1 hits" in t)
    assert [e.text for e in drv.find_elements("css selector", ".hit .id")] == index.exact(smi).ids
