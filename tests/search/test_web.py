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


def _editor_or_skip():
    from compscope.search import find_editor

    if find_editor() is None:
        msg = "structure editor not installed (compscope search install-editor)"
        if _in_ci():  # .ci/run installs it: the editor round trip must run there
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)


def _orange_pixels(png: Path) -> int:
    import numpy as np
    from PIL import Image

    from compscope.search._web import HIGHLIGHT_RGB

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    target = np.array([round(255 * c) for c in HIGHLIGHT_RGB])
    return int((np.abs(rgb - target).max(axis=-1) <= 12).sum())


def test_drawn_query_round_trip_highlights_and_similarity_bars(browser, url, index, tmp_path):
    """Draw with real mouse clicks in JSME -> its SMILES becomes the query -> substructure hits with the matched
    atoms highlighted (in the SVG and visibly in a screenshot); similarity hits carry a bar as wide as the score."""
    import httpx
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    from compscope.search._web import HIGHLIGHT_HEX

    _editor_or_skip()
    drv = browser
    drv.get(url + "/")
    WebDriverWait(drv, 30).until(lambda d: "molecules" in d.find_element("id", "info").text)
    drv.find_element("css selector", "input[name=mode][value=substructure]").click()
    drv.find_element("id", "toggle-editor").click()
    WebDriverWait(drv, 60).until(lambda d: d.execute_script("return editorApplet !== null"))
    area = drv.find_element("id", "jsme-container")
    r = area.rect
    for _ in range(2):  # the default bond tool: a click on empty canvas draws ethane, a second click extends it
        ActionChains(drv).move_to_element_with_offset(area, int(230 - r["width"] / 2),
                                                      int(170 - r["height"] / 2)).click().perform()
    drawn = drv.execute_script("return editorApplet.smiles()")
    assert drawn == "CCC"
    drv.find_element("id", "use-drawing").click()
    _wait_status(drv, lambda t: "hits" in t or "Error" in t)
    assert drv.find_element("id", "query").get_attribute("value") == drawn
    ids = [e.text for e in drv.find_elements("css selector", ".hit .id")]
    assert ids == index.substructure(drawn, limit=20).ids and len(ids) == 20
    imgs = drv.find_elements("css selector", ".hit img")
    WebDriverWait(drv, 60).until(lambda d: all(
        d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in imgs))
    svg = httpx.get(imgs[0].get_attribute("src"), timeout=60).text
    assert "highlight=CCC" in imgs[0].get_attribute("src") and HIGHLIGHT_HEX in svg
    shot = tmp_path / "drawn.png"
    drv.save_screenshot(str(shot))
    assert _orange_pixels(shot) > 500  # the highlighted atoms are visible on screen, not only in the markup

    # similarity: a colour bar per hit whose width is the score
    drv.find_element("id", "toggle-editor").click()
    _search(drv, queries()[3], "topk")
    _wait_status(drv, lambda t: "hits" in t or "Error" in t)
    top = index.top_k(queries()[3], 20)
    widths = [float(e.get_attribute("style").split("width:")[1].split("%")[0])
              for e in drv.find_elements("css selector", ".hit .simbar span")]
    assert widths == pytest.approx([100 * s for s in top.scores], abs=0.06)
    for img in drv.find_elements("css selector", ".hit img"):
        assert "highlight=" not in img.get_attribute("src")
    assert not drv.find_element("id", "export-csv").get_attribute("disabled")
