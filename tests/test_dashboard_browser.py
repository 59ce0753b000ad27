"""The dashboard driven in Debian's chromium through chromium-driver: offline, no console errors,
a table that sorts, filters and pages, and report links that open."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from tests.test_loom_support import sample
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import dashboard
from toyfoundry.telemetry.loom import run_loom

if TYPE_CHECKING:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
else:  # imported when a test runs, not when pytest collects this file (see test_export_types)
    By = Select = WebDriverWait = None

RECIPES = ("gear-golem", "kite-knight", "drum-dragon")
STATUSES = ("built", "built", "awaiting-review", "blocked", "rejected")


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver"
        if Path("/usr/lib/chromium/chromedriver").exists()
        else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    global By, Select, WebDriverWait
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (.[test])")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    found = _binaries()
    if found is None:
        pytest.skip(
            "chromium or chromium-driver not installed (apt-get install chromium"
            " chromium-driver); .ci/run installs them"
        )
    binary, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # the network off: no proxy answers and no name resolves
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    try:
        yield driver
    finally:
        driver.quit()


def _batch(i: int) -> dict[str, Any]:
    status = STATUSES[i % len(STATUSES)]
    minted = 0 if status in ("blocked", "rejected") else 96 - i % 7
    day = f"2025-11-{1 + i // 10:02d}"
    return {
        "order_id": f"{day}-{i % 10 + 1:03d}",
        "recipe": RECIPES[i % 3],
        "phase": "operational" if i % 4 else "expansion",
        "day": day,
        "status": status,
        "reason": {"blocked": "no operational checkpoint", "rejected": "bad seed"}.get(status, ""),
        "dry_run": False,
        "outcomes": {
            "minted": minted,
            "drilled": minted,
            "passed": minted // 2,
            "failed": minted - minted // 2,
            "promoted": minted // 12,
            "quarantined": 2 if status == "awaiting-review" else 0,
        },
        "defects": {"wobble": i % 3},
        "target": {"novel": 58, "carryover": 19, "baseline": 19} if minted else {},
        "achieved": {"novel": 58 - i % 5, "carryover": 19, "baseline": 19} if minted else {},
        "telemetry": {"mint_attempts": 1, "ritual_invocations": 4, "last_attempt": None},
    }


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """A dashboard of 230 orders, written from a rollup: enough for five pages."""
    layout = Layout(tmp_path_factory.mktemp("many") / "p")
    layout.rollup.parent.mkdir(parents=True)
    doc = {"schema_version": 1, "batches": [_batch(i) for i in range(230)], "totals": {}}
    layout.rollup.write_bytes(orjson.dumps(doc))
    dashboard.build_dashboard(layout, "2025-11-23")
    return layout


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    layout = sample(tmp_path_factory.mktemp("small") / "p")
    run_loom(layout, export=True, today="2025-10-28")
    return layout


def _open(driver: Any, layout: Layout) -> None:
    driver.get(layout.dashboard.absolute().as_uri())
    WebDriverWait(driver, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#orders-table tbody tr")
    )


def _column(driver: Any, index: int) -> list[str]:
    cells = driver.find_elements(By.CSS_SELECTOR, f"#orders-table tbody td:nth-child({index})")
    return [c.text for c in cells]


def _errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_loads_offline_without_console_errors(browser: Any, many: Layout) -> None:
    _open(browser, many)
    charts = browser.find_elements(By.CSS_SELECTOR, ".chart .main-svg")
    assert len(
        {c.find_element(By.XPATH, "ancestor::section").get_attribute("data-chart") for c in charts}
    ) == len(dashboard.CHARTS)
    assert _errors(browser) == []
    assert browser.find_element(By.ID, "t-count").text == "230 orders"
    assert browser.find_element(By.ID, "t-page").text == "page 1 of 5"
    assert len(_column(browser, 1)) == 50


def test_sorting_filtering_and_paging(browser: Any, many: Layout) -> None:
    _open(browser, many)
    minted = browser.find_element(By.CSS_SELECTOR, 'th button[data-col="minted"]')
    minted.click()
    header = minted.find_element(By.XPATH, "..")
    assert header.get_attribute("aria-sort") == "descending"
    values = [int(v.replace(",", "")) for v in _column(browser, 6)]
    assert values == sorted(values, reverse=True) and values[0] == 96
    minted.click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = [int(v.replace(",", "")) for v in _column(browser, 6)]
    assert values == sorted(values) and values[0] == 0

    Select(browser.find_element(By.ID, "f-status")).select_by_value("blocked")
    assert set(_column(browser, 5)) == {"blocked"}
    assert browser.find_element(By.ID, "t-count").text == "46 of 230 orders"
    Select(browser.find_element(By.ID, "f-recipe")).select_by_value("kite-knight")
    Select(browser.find_element(By.ID, "f-phase")).select_by_value("operational")
    rows = list(zip(_column(browser, 3), _column(browser, 4), _column(browser, 5), strict=True))
    assert rows and set(rows) == {("kite-knight", "operational", "blocked")}
    for name in ("status", "recipe", "phase"):
        Select(browser.find_element(By.ID, f"f-{name}")).select_by_value("")

    first = _column(browser, 1)
    browser.find_element(By.ID, "t-next").click()
    assert browser.find_element(By.ID, "t-page").text == "page 2 of 5"
    assert _column(browser, 1) != first
    assert _errors(browser) == []


def test_the_attention_list_links_to_its_orders_in_the_table(browser: Any, many: Layout) -> None:
    _open(browser, many)
    browser.find_element(By.CSS_SELECTOR, '#attention a[href="#status=blocked"]').click()
    WebDriverWait(browser, 30).until(lambda d: set(_column(d, 5)) == {"blocked"})
    assert Select(browser.find_element(By.ID, "f-status")).first_selected_option.text == "blocked"
    assert browser.find_element(By.ID, "t-count").text == "46 of 230 orders"
    assert _errors(browser) == []


def test_a_report_link_opens_the_report(browser: Any, small: Layout) -> None:
    _open(browser, small)
    link = browser.find_element(
        By.CSS_SELECTOR, '#orders-table a.report[href$="2025-10-27-014.html"]'
    )
    assert browser.find_element(By.XPATH, "//code[text()='toyfoundry why 2025-10-27-014']")
    link.click()
    WebDriverWait(browser, 30).until(lambda d: d.title == "Order 2025-10-27-014")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Order 2025-10-27-014: awaiting-review"
    assert browser.find_elements(By.CSS_SELECTOR, "table td")
    # the day's kept page has the same links, and they open from there too
    browser.get((small.telemetry / "dashboards" / "2025-10-28.html").absolute().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.report"))
    browser.find_element(By.CSS_SELECTOR, "#attention a.report").click()
    WebDriverWait(browser, 30).until(lambda d: d.title.startswith("Order "))
    assert _errors(browser) == []
