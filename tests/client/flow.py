"""The reset flow and a login, run through a client generated from the OpenAPI document that
authd serves (openapi-python-client). Run by scripts/check-client, which starts the server,
creates the account ADDRESS with password OLD through the CLI, generates the package
`authd_client` into a scratch folder and puts it on sys.path.

Every call goes through the generated functions and models, with
raise_on_unexpected_status=True: a status the document does not list for an operation fails
the run, and so does an answer that does not parse into the documented model.
"""

import email
import enum
import email.policy
import pathlib
import re
import sys
import time

from authd_client import AuthenticatedClient, Client
from authd_client.api.authentication import accesstoken, login, logout, validate_accesstoken
from authd_client.api.password_reset import (
    check_password_reset_otp,
    send_password_reset,
    update_password_via_otp,
)
from authd_client.models import (
    LoginBody,
    ResetSendBody,
    ResetValidateBody,
    ResetWithOtpBody,
    UserIdBody,
)
from authd_client.types import Unset

base_url, mail_dir = sys.argv[1], pathlib.Path(sys.argv[2])
ADDRESS = "client.flow@example.org"
OLD, NEW = "Correct1horse", "Battery2staple"


def check(cond, what):
    if not cond:
        print(f"FAIL  {what}", file=sys.stderr)
        sys.exit(1)
    print(f"PASS  {what}")


def code_from_newest_mail(after: set) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = sorted(set(mail_dir.glob("*.eml")) - after)
        if new:
            msg = email.message_from_bytes(new[-1].read_bytes(), policy=email.policy.default)
            check(msg["To"] == ADDRESS, f"the reset mail is addressed to the user ({msg['To']})")
            text = msg.get_body(preferencelist=("plain",)).get_content()
            m = re.search(r"\b(\d{6})\b", text)
            check(m is not None, "the reset mail carries a 6-digit code")
            return m.group(1)
        time.sleep(0.05)
    check(False, "a reset mail was written within 10 s")


# The account was made by scripts/check-client with the CLI (`authd user create`).
client = Client(base_url=base_url, raise_on_unexpected_status=True)

before = set(mail_dir.glob("*.eml"))
res = send_password_reset.sync_detailed(client=client, body=ResetSendBody(email=ADDRESS),
                                         origin="default", language="en")
check(res.status_code == 200, f"sendPasswordReset answers 200 ({res.status_code})")
code = code_from_newest_mail(before)

res = send_password_reset.sync_detailed(client=client, body=ResetSendBody(email=ADDRESS),
                                         origin="default", language="en")
# The document lists each answer's message codes as an enum: the generated client parses the
# 429 into its own model whose message is an Enum member.
check(res.status_code == 429 and isinstance(res.parsed.message, enum.Enum)
      and res.parsed.message == "TOO_MANY_RESET_MAIL_ATTEMPTS" and res.parsed.retry_after >= 1,
      f"a second send is throttled, its message a generated enum ({res.status_code} {res.parsed})")

wrong = "000000" if code != "000000" else "000001"
res = check_password_reset_otp.sync_detailed(client=client, body=ResetValidateBody(email=ADDRESS, otp=wrong))
check(res.status_code == 401 and res.parsed.message == "OTP_INVALID_EXPIRED",
      f"checkPasswordResetOtp refuses a wrong code ({res.parsed})")
res = check_password_reset_otp.sync_detailed(client=client, body=ResetValidateBody(email=ADDRESS, otp=code))
check(res.status_code == 200, f"checkPasswordResetOtp accepts the mailed code ({res.status_code})")

res = update_password_via_otp.sync_detailed(
    client=client, body=ResetWithOtpBody(user_email=ADDRESS, otp=code, new_password=NEW))
check(res.status_code == 200, f"updatePasswordViaOtp answers 200 ({res.status_code} {res.content!r})")

# The login's 401 has one documented body (TwoFactorRequiredBody's fields): the error fields,
# and partialToken/methods only with TWO_FACTOR_REQUIRED.
res = login.sync_detailed(client=client, body=LoginBody(username=ADDRESS, password=OLD))
check(res.status_code == 401 and isinstance(res.parsed.partial_token, Unset)
      and res.parsed.message == "PASSWORD_INCORRECT",
      f"login with the old password is refused ({res.status_code} {res.parsed})")
res = login.sync_detailed(client=client, body=LoginBody(username=ADDRESS, password=NEW))
check(res.status_code == 200 and isinstance(res.parsed, str) and len(res.parsed) > 20,
      f"login with the new password gives a refresh token ({res.status_code})")
refresh = res.parsed

with_refresh = AuthenticatedClient(base_url=base_url, token=refresh, raise_on_unexpected_status=True)
res = accesstoken.sync_detailed(client=with_refresh)
check(res.status_code == 200 and isinstance(res.parsed, str), "accesstoken gives an access token")
with_access = AuthenticatedClient(base_url=base_url, token=res.parsed, raise_on_unexpected_status=True)
res = validate_accesstoken.sync_detailed(client=with_access)
check(res.status_code == 200 and isinstance(res.parsed, UserIdBody) and res.parsed.user_id > 0,
      f"validateAccesstoken answers with the user id ({res.parsed})")
res = logout.sync_detailed(client=with_refresh)
check(res.status_code == 204, f"logout answers 204 ({res.status_code})")
res = accesstoken.sync_detailed(client=with_refresh)
check(res.status_code == 401, "the refresh token is dead after logout")
print("check-client: the generated client ran the reset flow and a login")
