-- POST /v1/subscriptions/{id}/cancel and .../resume, alternating, over a pool of subscriptions each sent with its
-- owner's token and a fresh Idempotency-Key per request.  wrk -s write.lua URL -- <pool file> <key prefix>
-- Request k goes to subscription k mod n: cancel on even passes over the pool, resume on odd ones. A subscription
-- is thus asked again only n requests later (n >> connections), so its previous request has completed and each
-- request really changes state (run.py resets the pool to "not cancelled" before each round). One wrk thread.
local pool, n, k, prefix = {}, 0, 0, "k"

function init(args)
   for line in io.lines(args[1]) do
      local id, token = line:match("^(%S+)\t(%S+)$")
      if id then
         n = n + 1
         pool[n] = {"/v1/subscriptions/" .. id, "Bearer " .. token}
      end
   end
   prefix = args[2] or prefix
end

function request()
   local idx = k % n + 1
   local op = (math.floor(k / n) % 2 == 0) and "/cancel" or "/resume"
   local p = pool[idx]
   local headers = {["Authorization"] = p[2], ["Idempotency-Key"] = prefix .. "-" .. k}
   k = k + 1
   return wrk.format("POST", p[1] .. op, headers)
end

function done(summary, latency, requests)
   dofile(os.getenv("BENCH_REPORT_LUA"))
   report(summary, latency)
end
