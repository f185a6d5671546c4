#!/usr/bin/env python3
"""Drives the portal in headless Chromium (Selenium and chromedriver), one step a run, for
examples/tests/portal.rs, which runs the DHCP side (dhclient, config reloads) between steps.

    browser.py BASE STEP [ARGS...]

BASE is the server's API address (http://127.0.0.1:8067). The shared API token comes in
PORTAL_TOKEN; screenshots go to PORTAL_SHOTS (a directory) when it is set. A step that finds
the portal wrong exits non-zero with the reason on standard error.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

PASSWORD = "a long enough password"
USERS = {"ed": "editor", "vera": "viewer", "ada": "admin"}


def fail(why):
    print(f"portal: {why}", file=sys.stderr)
    sys.exit(1)


def check(condition, why):
    if not condition:
        fail(why)


def api(base, method, path, body=None):
    """The JSON API with the shared token: (status, body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + os.environ["PORTAL_TOKEN"])
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def browser():
    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--user-data-dir=" + os.environ.get("PORTAL_PROFILE", "/tmp/portal-profile")]:
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(20)
    return driver


def shot(driver, name):
    where = os.environ.get("PORTAL_SHOTS")
    if where:
        driver.save_screenshot(os.path.join(where, name + ".png"))


def submit(driver, button):
    """Clicks a form's button and waits for the page it leads to: a click does not wait."""
    old = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def login(driver, base, user):
    driver.get(base + "/portal/login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    alerts = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "[role=alert]")]
    check(driver.current_url.rstrip("/").endswith("/portal"), f"{user} is not on the dashboard: {driver.current_url} {alerts}")
    check(f"{user} ({USERS[user]})" in driver.page_source, f"{user} is not shown as logged in")


def fill(driver, field_id, text):
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(text)


def step_setup(base):
    for name, role in USERS.items():
        status, body = api(base, "PUT", f"/api/v1/users/{name}", {"role": role, "password": PASSWORD})
        check(status in (200, 201), f"user {name}: {status} {body}")


def step_add_reservation(base, mac, ip):
    driver = browser()
    try:
        login(driver, base, "ed")
        shot(driver, "dashboard")
        driver.get(base + "/portal/reservations")
        fill(driver, "r-subnet", "1")
        fill(driver, "r-hw-address", mac)
        fill(driver, "r-ip-address", ip)
        fill(driver, "r-hostname", "browser-desk")
        fill(driver, "r-description", "added in the portal")
        submit(driver, driver.find_element(By.XPATH, "//button[text()='Save']"))
        rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr")]
        alerts = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "[role=alert]")]
        check(any(mac in r and ip in r for r in rows), f"the new reservation is not listed: {rows} {alerts}")
        shot(driver, "reservations")
        driver.get(base + "/portal/leases")
        shot(driver, "leases")
    finally:
        driver.quit()


def step_viewer(base):
    driver = browser()
    try:
        login(driver, base, "vera")
        driver.get(base + "/portal/reservations")
        buttons = [b.text for b in driver.find_elements(By.TAG_NAME, "button")]
        check(buttons == ["Search", "Log out"] or set(buttons) <= {"Search", "Log out"},
              f"a viewer sees edit controls: {buttons}")
        check(not driver.find_elements(By.ID, "r-hw-address"), "a viewer sees the add form")
        before = api(base, "GET", "/api/v1/reservations")[1]["reservations"]
        # A forged POST from the viewer's own session, with its own CSRF token (the strongest
        # forgery there is), and one without a token: both refused, nothing added.
        csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
        script = """
            const [csrf, done] = [arguments[0], arguments[arguments.length - 1]];
            const post = (body) => fetch('/portal/reservations', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body}).then(r => r.status);
            Promise.all([post('csrf=' + csrf + '&subnet=1&hw-address=02:00:00:00:00:66&ip-address=10.199.0.66'),
                         post('subnet=1&hw-address=02:00:00:00:00:67&ip-address=10.199.0.67')]).then(done);
        """
        statuses = driver.execute_async_script(script, csrf)
        check(statuses == [403, 403], f"forged POSTs were not refused: {statuses}")
        after = api(base, "GET", "/api/v1/reservations")[1]["reservations"]
        check(after == before, "a forged POST changed the reservations")
    finally:
        driver.quit()


def step_import(base, bad_path, good_path):
    driver = browser()
    try:
        login(driver, base, "ed")
        before = api(base, "GET", "/api/v1/reservations")[1]["reservations"]
        driver.get(base + "/portal/import")
        driver.find_element(By.ID, "file").send_keys(os.path.abspath(bad_path))
        submit(driver, driver.find_element(By.XPATH, "//button[text()='Preview']"))
        alerts = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "[role=alert]")]
        check(any("refused" in a for a in alerts), f"the bad row is not shown: {alerts}")
        check(not driver.find_elements(By.XPATH, "//button[starts-with(text(), 'Apply')]"), "Apply is offered")
        shot(driver, "import-refused")
        check(api(base, "GET", "/api/v1/reservations")[1]["reservations"] == before, "a refused import applied")
        driver.get(base + "/portal/import")
        driver.find_element(By.ID, "file").send_keys(os.path.abspath(good_path))
        submit(driver, driver.find_element(By.XPATH, "//button[text()='Preview']"))
        apply = driver.find_elements(By.XPATH, "//button[starts-with(text(), 'Apply')]")
        check(apply, "the fixed file offers no Apply: " + driver.find_element(By.TAG_NAME, "main").text)
        submit(driver, apply[0])
        check("reservations added or changed" in driver.page_source, "no confirmation after Apply")
        after = api(base, "GET", "/api/v1/reservations")[1]["reservations"]
        check(len(after) > len(before), f"the import applied nothing: {len(before)} then {len(after)}")
    finally:
        driver.quit()


def step_rollback(base, version):
    driver = browser()
    try:
        login(driver, base, "ada")
        driver.get(base + "/portal/history")
        shot(driver, "history")
        fill(driver, f"why-{version}", "routers broke printing")
        submit(driver, driver.find_element(By.XPATH, f"//button[@aria-label='Roll back to version {version}']"))
        status = driver.find_element(By.CSS_SELECTOR, "[role=status]").text
        check(f"Version {version} is running again" in status, f"no confirmation: {status}")
        driver.get(base + f"/portal/history/diff?from={version}&to={int(version) + 1}")
        shot(driver, "history-diff")
        driver.get(base + "/portal/audit")
        check("config.rollback" in driver.page_source, "the rollback is not in the audit log")
    finally:
        driver.quit()


def step_timings(base, limit_ms):
    """Each page's load time in the browser (navigation start to load end), as JSON."""
    driver = browser()
    try:
        login(driver, base, "ada")
        timings = {}
        for page in ["", "/leases", "/leases?q=host-4242", "/reservations", "/reservations?page=20",
                     "/groups", "/subnets", "/history", "/audit"]:
            best = None
            for _ in range(3):
                driver.get(base + "/portal" + page)
                ms = driver.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;")
                best = ms if best is None else min(best, ms)
            timings[page or "/"] = round(best, 1)
        print(json.dumps(timings))
        slow = {p: t for p, t in timings.items() if t >= float(limit_ms)}
        check(not slow, f"pages slower than {limit_ms} ms: {slow}")
    finally:
        driver.quit()


def step_oidc(base, expect):
    """Logs in through the identity provider: EXPECT is `NAME (ROLE)` on the dashboard, or
    `refused:TEXT` for a refusal saying TEXT."""
    driver = browser()
    try:
        driver.get(base + "/portal/login")
        submit(driver, driver.find_element(By.LINK_TEXT, "Log in with your organisation's account"))
        WebDriverWait(driver, 15).until(lambda d: "/portal" in d.current_url and "/oidc/" not in d.current_url
                                        or d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
        alerts = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "[role=alert]")]
        if expect.startswith("refused:"):
            check(any(expect[len("refused:"):] in a for a in alerts), f"not refused as expected: {alerts}")
            check("Log out" not in driver.page_source, "logged in after all")
            return
        check(driver.current_url.rstrip("/").endswith("/portal"), f"not on the dashboard: {driver.current_url} {alerts}")
        check(expect in driver.page_source, f"{expect} is not shown as logged in")
        if "(admin)" not in expect:
            driver.get(base + "/portal/users")
            check("this needs admin" in driver.page_source, "a non-admin from the provider reached the users page")
    finally:
        driver.quit()


STEPS = {
    "oidc-login": step_oidc,
    "setup": step_setup,
    "add-reservation": step_add_reservation,
    "viewer": step_viewer,
    "import": step_import,
    "rollback": step_rollback,
    "timings": step_timings,
}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in STEPS:
        fail(f"usage: browser.py BASE {'|'.join(STEPS)} [ARGS...]")
    STEPS[sys.argv[2]](sys.argv[1], *sys.argv[3:])
