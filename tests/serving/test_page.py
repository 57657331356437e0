"""The upload page in headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
`make chromium`): choose a real bin photo, see a count; type an expected quantity, see a
verdict; send a broken file, see the server's error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromedriver are missing: run `make chromium` (apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_upload_a_photo_and_see_the_count_and_verdict(browser, server, abid, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "01843.jpg"
    shutil.copy(abid / "bin-images" / "01843.jpg", photo)
    _, answer = server.post(photo.read_bytes(), "image/jpeg")

    browser.get(server.url + "/")
    assert "Count the objects" in browser.title + browser.page_source
    browser.find_element(By.ID, "file").send_keys(str(photo))
    count = wait_for(browser, lambda d: d.find_element(By.ID, "count").text)
    assert count == str(answer["count"])
    rows = browser.find_elements(By.CSS_SELECTOR, "#probs tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == list(
        answer["probabilities"]
    )
    assert not browser.find_element(By.ID, "verdict").is_displayed()

    expected = browser.find_element(By.ID, "expected")
    expected.send_keys("3")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", expected)
    verdict = wait_for(browser, lambda d: d.find_element(By.ID, "verdict").text)
    assert verdict.split()[0] in ("match", "mismatch", "unsure")
    assert "expected 3" in verdict


def test_a_broken_file_shows_the_servers_error(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a photo")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(broken))
    error = wait_for(browser, lambda d: d.find_element(By.ID, "error").text)
    assert "not an image" in error
