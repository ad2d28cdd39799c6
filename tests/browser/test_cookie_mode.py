"""Cookie mode and CORS in a real chromium, against a real authd.

Run by scripts/check-browser, which starts authd with http.cors.allowed_origins set to
AUTHD_APP_ORIGIN, creates AUTHD_COOKIE_EMAIL with the CLI, and serves one static page on
each of the two origins. CORS, the cookie's attributes and SameSite are the browser's own.

- A page on the allowed origin logs in with cookie=true, never sees the refresh token, and
  gets access tokens with fetch(..., {credentials: 'include'}); the rotation sets a new cookie;
  logout clears it.
- A page on another origin cannot log in or get an access token, even with the cookie in
  its browser.
"""

import os

import pytest
from playwright.sync_api import sync_playwright

API = os.environ["AUTHD_URL"].replace("127.0.0.1", "localhost")
APP = os.environ["AUTHD_APP_ORIGIN"]
OTHER = os.environ["AUTHD_OTHER_ORIGIN"]
EMAIL = os.environ["AUTHD_COOKIE_EMAIL"]
PASSWORD = os.environ["AUTHD_USER_PASSWORD"]
CHROMIUM = os.environ["CHROMIUM"]

# Each call answers {status, body}, or {error} when the browser refused to hand the answer
# to the page (CORS).
CALL = """async ([url, method, body]) => {
  const init = {method, credentials: 'include'};
  if (body !== null) {
    init.headers = {'content-type': 'application/json'};
    init.body = JSON.stringify(body);
  }
  try {
    const r = await fetch(url, init);
    return {status: r.status, body: await r.text()};
  } catch (e) {
    return {error: String(e)};
  }
}"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        yield browser
        browser.close()


def app_page(context, origin):
    page = context.new_page()
    page.goto(origin + "/app.html")
    return page


def call(page, path, method="GET", body=None):
    return page.evaluate(CALL, [API + path, method, body])


def refresh_cookie(context):
    cookies = [c for c in context.cookies(API + "/auth/") if c["name"] == "authd_refresh"]
    return cookies[0] if cookies else None


def test_an_allowed_origin_logs_in_with_the_cookie_and_another_origin_cannot(browser):
    context = browser.new_context()
    page = app_page(context, APP)

    res = call(page, "/auth/login?cookie=true", "POST", {"username": EMAIL, "password": PASSWORD})
    assert res == {"status": 200, "body": "null"}, res
    cookie = refresh_cookie(context)
    assert cookie is not None, context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/auth", cookie
    assert cookie["expires"] > 0, "lives as long as the refresh token, not the session"
    assert "authd_refresh" not in page.evaluate("document.cookie"), "scripts never see it"

    res = call(page, "/auth/accesstoken")
    assert res["status"] == 200 and res["body"].count(".") == 2, res
    res = call(page, "/auth/refreshtoken/validate")
    assert res["status"] == 200 and '"userId"' in res["body"], res

    # Rotation: a new token in a new cookie; the old one is dead.
    res = call(page, "/auth/refreshtoken?cookie=true")
    assert res == {"status": 200, "body": "null"}, res
    rotated = refresh_cookie(context)
    assert rotated["value"] != cookie["value"], "the cookie was rotated"
    assert call(page, "/auth/accesstoken")["status"] == 200

    # Another origin: same browser profile, same cookie jar; refused by CORS and by the
    # server's origin check.
    other = app_page(context, OTHER)
    res = call(other, "/auth/accesstoken")
    assert "error" in res, f"another origin read an access token: {res}"
    res = call(other, "/auth/login?cookie=true", "POST", {"username": EMAIL, "password": PASSWORD})
    assert "error" in res, f"another origin logged in: {res}"
    other.close()

    # Logout clears the cookie, and the token it held is revoked.
    res = call(page, "/auth/logout", "POST")
    assert res["status"] == 204, res
    assert refresh_cookie(context) is None, context.cookies()
    context.add_cookies([{**rotated, "sameSite": "Strict"}])
    res = call(page, "/auth/accesstoken")
    assert res["status"] == 401, f"the logged-out token still works: {res}"
    context.close()
