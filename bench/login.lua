-- wrk script: logins with the right password for one of 1000 seeded accounts.
math.randomseed(os.time())
request = function()
  local body = '{"username":"u' .. math.random(1, 1000) .. '@bench.example.org","password":"Correct1horse"}'
  return wrk.format("POST", "/auth/login", { ["Content-Type"] = "application/json" }, body)
end
