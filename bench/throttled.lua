-- wrk script: every request asks a reset for the same address, which has already been sent
-- one: the throttled path (429 from the RateLimiter's memory).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"u1@bench.example.org"}'
