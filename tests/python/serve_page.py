#!/usr/bin/env python3
"""Drives medllm's web page in headless Chromium (Debian's chromium and chromium-driver,
through the selenium package): pastes a report, picks a schema, runs a real extraction,
and checks the page's DOM: the JSON is shown, values found in the report are highlighted
at their place in it, and values not found are marked. Saves a screenshot.

Usage: serve_page.py BASE API_KEY SCREENSHOT.png
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for drivers online

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, KEY, SHOT = sys.argv[1:4]
REPORT = (
    "Discharge summary. 67-year-old male admitted with community-acquired pneumonia of the right lower lobe. "
    "Treated with ceftriaxone 1 g IV daily and azithromycin 500 mg daily. Allergies: penicillin (rash). "
    "Discharged home in stable condition, follow up with primary care in 1 week."
)


def fail(what):
    raise SystemExit(f"FAILED: {what}")


profile = tempfile.mkdtemp(prefix="medllm-chromium-")
options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1100",
]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
try:
    driver.get(BASE + "/")
    driver.find_element(By.ID, "apikey").send_keys(KEY)
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#schema option")) >= 5)
    Select(driver.find_element(By.ID, "schema")).select_by_value("discharge_summary")
    driver.find_element(By.ID, "report").send_keys(REPORT)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 600).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "failed"))
    state = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    status = driver.find_element(By.ID, "status").text
    if state != "done":
        fail(f"the extraction failed on the page: {status}")
    print("status:", status)

    # The JSON box holds the extraction as JSON.
    shown = json.loads(driver.find_element(By.ID, "json").text)
    if not isinstance(shown, dict) or "patient_age" not in shown:
        fail(f"the page shows no discharge_summary JSON: {shown}")
    print("json:", json.dumps(shown)[:300])

    # The source box shows the report itself, with marks at the places values came from.
    source = driver.find_element(By.ID, "source").text
    if source != REPORT:
        fail("the source box does not hold the report as pasted")
    marks = driver.find_elements(By.CSS_SELECTOR, "#source mark")
    if not marks:
        fail("no value of the extraction is highlighted in the report")
    for mark in marks:
        if mark.text not in REPORT or not mark.get_attribute("data-paths"):
            fail(f"a highlight does not match the report: {mark.text!r}")
    grounded = driver.find_elements(By.CSS_SELECTOR, "#json .value.grounded")
    if not grounded:
        fail("no JSON value is marked as found in the report")
    # Each highlighted JSON value's text is the text of a mark with its path.
    by_path = {}
    for mark in marks:
        for path in mark.get_attribute("data-paths").split():
            by_path.setdefault(path, []).append(mark.text)
    for value in grounded:
        path = value.get_attribute("data-path")
        if path not in by_path:
            fail(f"the value at {path} is marked found but nothing in the report is highlighted for it")
    ungrounded_list = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#ungrounded li")]
    ungrounded_values = [v.get_attribute("data-path") for v in driver.find_elements(By.CSS_SELECTOR, "#json .value.ungrounded")]
    if sorted(ungrounded_list) != sorted(ungrounded_values):
        fail(f"values not found in the report are not marked alike: {ungrounded_list} vs {ungrounded_values}")
    if driver.find_element(By.ID, "download").get_attribute("disabled") is not None:
        fail("download is not offered after an extraction")
    print(f"{len(marks)} highlights, {len(grounded)} values found in the report, {len(ungrounded_list)} not found")

    # De-identification: with the toggle on, the source shown no longer holds the name.
    driver.find_element(By.ID, "report").clear()
    driver.find_element(By.ID, "report").send_keys("Patient John Smith, MRN 4471123, seen 03/04/2021. 58-year-old male with gout.")
    driver.find_element(By.ID, "deid").click()
    driver.execute_script("document.body.dataset.state = ''")
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 600).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "failed"))
    source = driver.find_element(By.ID, "source").text
    if "John Smith" in source or "4471123" in source:
        fail("the de-identify toggle left the name or MRN in the text")
    print("de-identified source:", source)

    # The screenshot shows the first extraction's highlights; run it again for the picture.
    driver.find_element(By.ID, "deid").click()
    driver.find_element(By.ID, "report").clear()
    driver.find_element(By.ID, "report").send_keys(REPORT)
    driver.execute_script("document.body.dataset.state = ''")
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 600).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "failed"))
    os.makedirs(os.path.dirname(os.path.abspath(SHOT)), exist_ok=True)
    if not driver.save_screenshot(SHOT):
        fail("no screenshot")
    print("screenshot:", SHOT)
finally:
    driver.quit()
print("page checks passed")
