-- POST /v1/webhooks/stripe with distinct, pre-signed Stripe events, each sent once, in file order.
-- wrk -s webhook.lua URL -- <events file>   (one "Stripe-Signature header<TAB>payload" per line; one wrk thread)
-- When the events run out the thread stops and the summary says so ("exhausted": 1): run.py then discards the
-- round (its duration would include idle time) and retries with more events.
local events, n, i = {}, 0, 0
exhausted = 0  -- global: read by done() through the thread object
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   for line in io.lines(args[1]) do
      local sig, payload = line:match("^([^\t]+)\t(.+)$")
      if sig then
         n = n + 1
         events[n] = {sig, payload}
      end
   end
end

function request()
   i = i + 1
   if i > n then
      exhausted = 1
      wrk.thread:stop()
      i = n
   end
   local e = events[i]
   return wrk.format("POST", "/v1/webhooks/stripe",
                     {["Stripe-Signature"] = e[1], ["Content-Type"] = "application/json"}, e[2])
end

function done(summary, latency, requests)
   dofile(os.getenv("BENCH_REPORT_LUA"))
   local out = 0
   for _, t in ipairs(threads) do out = out + (t:get("exhausted") or 0) end
   report(summary, latency, string.format(',"exhausted":%d', out))
end
