"""The live ``/status`` page in a real headless browser (Debian chromium +
chromium-driver through selenium; skipped with the reason where absent).

An operator opens the standby's page: it shows both VSMs; after ``kill -9``
of the active's process group (pgid from lab.json) the page, without a
reload, shows the other VSM active within 2 s and the dead one unreachable.
With ``OPENVSM_STATUS_SCREENSHOT=PATH`` the test also saves a screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _selenium() -> Any:
    try:
        import selenium.webdriver as webdriver
    except ImportError:
        return None
    return webdriver


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = _selenium()
    if webdriver is None:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium / chromium-driver absent (Debian packages: make system-deps)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1000,1250",
        "--ignore-certificate-errors",  # the lab's self-signed pair certificate
    ):
        opts.add_argument(arg)
    if os.geteuid() == 0:
        opts.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def node_states(driver: Any) -> dict[str, str]:
    """role -> state as the page shows it (the node cards' data attributes)."""
    states: dict[str, str] = driver.execute_script(
        "const o = {}; for (const e of document.querySelectorAll('.node'))"
        " o[e.dataset.role] = e.dataset.state; return o;"
    )
    return states


def wait_page(driver: Any, cond: Callable[[dict[str, str]], bool], timeout: float) -> float:
    start = time.monotonic()
    deadline = start + timeout
    while True:
        states = node_states(driver)
        if cond(states):
            return time.monotonic() - start
        assert time.monotonic() < deadline, f"page shows {states}"
        time.sleep(0.05)


def test_status_page_shows_the_takeover_live(make_lab: Callable[..., Lab], browser: Any) -> None:
    lab = make_lab(timers="fast")
    active = lab.start()
    shot = os.environ.get("OPENVSM_STATUS_SCREENSHOT")
    if shot:
        lab.start_vems(1)  # a module row in the picture
    lab.write_lab_json()
    doc = json.loads((lab.root / "lab.json").read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    standby = "secondary" if active == "primary" else "primary"
    # The HTTPS listener (the pair certificate; the browser is told to accept it).
    url = nodes[standby]["rest"].replace("https://", f"https://{doc['user']}:{doc['password']}@")
    browser.get(url + "/status")
    wait_page(browser, lambda s: s == {active: "active", standby: "standby"}, 15)
    if shot:
        time.sleep(3)  # let the gap chart fill for the picture
        browser.save_screenshot(shot)
    reloads = browser.execute_script("return performance.getEntriesByType('navigation').length")
    os.killpg(int(nodes[active]["pgid"]), signal.SIGKILL)
    took = wait_page(
        browser, lambda s: s.get(standby) == "active" and s.get(active) == "unreachable", 2.0
    )
    assert took <= 2.0
    assert (
        browser.execute_script("return performance.getEntriesByType('navigation').length")
        == reloads
    )
    assert "active: " + standby in browser.find_element("id", "banner").text
