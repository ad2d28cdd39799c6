-- wrk script: every request asks a reset for a different seeded address
-- (u<n>@bench.example.org), so each one takes the accepted path: a code and a mail written to
-- the outbox in one transaction. Threads take disjoint ranges.
-- `offset` is a global on purpose: setup() sets it in each thread's own Lua state.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 10000000)
  table.insert(threads, thread)
end

function init(args)
  offset = tonumber(offset) or 0
end

request = function()
  counter = counter + 1
  local body = '{"email":"u' .. (offset + counter) .. '@bench.example.org"}'
  return wrk.format("POST", "/user/password/reset/send", { ["Content-Type"] = "application/json" }, body)
end
