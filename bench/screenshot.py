"""Screenshot a built project's dashboard in headless chromium, the whole page, for docs/.

    python -m bench.screenshot ROOT OUT.png [--width 1400]

Uses Debian's chromium and chromium-driver through selenium (the test extra).
"""

from __future__ import annotations

import argparse
import base64
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def screenshot(page: Path, out: Path, width: int = 1400) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},1000"):
        options.add_argument(flag)
    service = webdriver.ChromeService(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(page.absolute().as_uri())
        WebDriverWait(driver, 120).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#orders-table tbody tr")
        )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, height)
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.quit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    ns = parser.parse_args()
    screenshot(ns.root / ".toyfoundry" / "telemetry" / "quilt" / "dashboard.html", ns.out, ns.width)
