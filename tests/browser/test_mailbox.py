"""The development mailbox (/dev/mail) in a real chromium, against a real authd.

Run by scripts/check-browser, which starts authd (file mail backend, fresh SQLite file) and
creates the account with the CLI. A password reset goes through the API; the mail must show
on the page without a reload; its code is read from the page and completes the reset; the new
password logs in. A mail whose HTML carries scripts shows without any of them running.
"""

import json
import os
import pathlib
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["AUTHD_URL"]
MAIL_DIR = pathlib.Path(os.environ["AUTHD_MAIL_DIR"])
ARTIFACTS = pathlib.Path(os.environ["AUTHD_ARTIFACTS"])
EMAIL = os.environ["AUTHD_USER_EMAIL"]
PASSWORD = os.environ["AUTHD_USER_PASSWORD"]
CHROMIUM = os.environ["CHROMIUM"]
NEW_PASSWORD = "Brand2newpass"


def call(method, path, body):
    """One JSON call to the API; returns (status, body text)."""
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=BASE)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def test_a_reset_mail_arrives_live_and_its_code_resets_the_password(page):
    res = page.goto(BASE + "/dev/mail")
    assert res.status == 200
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    # The script (a file, allowed by the policy) runs: it marks the list live.
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator(".empty")).to_contain_text("No mail yet")
    # A marker that a reload would wipe out.
    page.evaluate("window.__noReload = 'still here'")

    status, body = call(
        "POST",
        "/user/password/reset/send?origin=default&language=en",
        {"email": EMAIL},
    )
    assert status == 200, body

    row = page.locator("tr.mail", has_text=EMAIL)
    expect(row).to_be_visible(timeout=15_000)
    assert page.evaluate("window.__noReload") == "still here", "the page reloaded"
    expect(row).to_contain_text("password_reset")
    expect(row.locator('td[data-label="Lang"]')).to_have_text("en")
    expect(row.locator('td[data-label="Origin"]')).to_have_text("default")
    expect(page.locator("#mail-count")).to_have_text("1")
    page.screenshot(path=ARTIFACTS / "mailbox-list.png", full_page=True)

    row.locator("td.subject a").click()
    page.wait_for_url(re.compile(r"/dev/mail/m/default/[0-9TZ.\-]+\.eml$"))
    code = page.locator("#code").inner_text().strip()
    assert re.fullmatch(r"[0-9]{6}", code), code
    expect(page.locator("#kind")).to_have_text("password_reset")
    expect(page.locator("#language")).to_have_text("en")
    page.screenshot(path=ARTIFACTS / "mailbox-mail.png")
    # The copy button puts the code on the clipboard.
    page.locator("#copy").click()
    expect(page.locator("#copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == code
    # The link carries the code and opens in a new tab.
    link = page.locator("ul.links a").first
    assert f"otp={code}" in link.get_attribute("href")
    assert link.get_attribute("target") == "_blank"
    # The HTML part, in a frame sandboxed without scripts, shows the same code.
    assert page.locator("#html-part").get_attribute("sandbox") == ""
    expect(page.frame_locator("#html-part").locator("body")).to_contain_text(code)
    expect(page.locator("#text-part")).to_contain_text(code)
    expect(page.locator("#headers")).to_contain_text("X-Authd-Kind: password_reset")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=ARTIFACTS / "mailbox-mail-phone.png", full_page=True)

    status, body = call(
        "PUT",
        "/user/password/otp",
        {"userEmail": EMAIL, "otp": code, "newPassword": NEW_PASSWORD},
    )
    assert status == 200, body
    status, token = call(
        "POST", "/auth/login", {"username": EMAIL, "password": NEW_PASSWORD}
    )
    assert status == 200, token
    assert token, "a refresh token"
    status, _ = call("POST", "/auth/login", {"username": EMAIL, "password": PASSWORD})
    assert status == 401, "the old password no longer works"
    assert page.errors == [], page.errors


SCRIPTED_MAIL = """From: Mallory <mallory@example.org>\r
To: victim@example.org\r
Subject: A mail with scripts\r
Date: Thu, 01 Jan 2099 00:00:00 +0000\r
MIME-Version: 1.0\r
Content-Type: multipart/alternative; boundary="b"\r
\r
--b\r
Content-Type: text/plain; charset=utf-8\r
\r
harmless text\r
--b\r
Content-Type: text/html; charset=utf-8\r
\r
<html><body><p id="p">harmless</p>\r
<script>document.getElementById('p').textContent = 'SCRIPT RAN';\r
try { parent.document.title = 'PWNED'; } catch (e) {}\r
try { top.location = 'about:blank#pwned'; } catch (e) {}</script>\r
<img src="data:," onerror="document.body.setAttribute('data-pwned', '1')">\r
<a id="a" href="javascript:document.body.setAttribute('data-pwned', '2')">click</a>\r
</body></html>\r
--b--\r
"""


def test_no_script_of_a_mail_runs(page):
    (MAIL_DIR / "20990101T000000.000Z-0000000099.eml").write_text(SCRIPTED_MAIL)
    page.goto(BASE + "/dev/mail")
    row = page.locator("tr.mail", has_text="victim@example.org")
    expect(row).to_be_visible()
    row.locator("td.subject a").click()
    page.wait_for_url(re.compile(r"20990101T000000\.000Z-0000000099\.eml$"))
    title = page.title()
    frame = page.frame_locator("#html-part")
    expect(frame.locator("#p")).to_have_text("harmless")
    frame.locator("#a").click()
    page.wait_for_timeout(500)
    expect(frame.locator("#p")).to_have_text("harmless")
    expect(frame.locator("body")).not_to_have_attribute("data-pwned", re.compile(".*"))
    assert page.title() == title == "A mail with scripts · authd"
    assert page.url.endswith("20990101T000000.000Z-0000000099.eml")

    # Delete everything from the list (the confirmation accepted).
    page.on("dialog", lambda d: d.accept())
    page.goto(BASE + "/dev/mail")
    page.locator("#delete-all").click()
    expect(page.locator(".empty")).to_contain_text("No mail yet")
    assert not list(MAIL_DIR.glob("*.eml"))
    assert page.errors == [], page.errors
