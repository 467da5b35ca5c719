-- GET /v1/subscriptions/{id}, rotating over a pool of (subscription, customer token) pairs: each subscription is
-- read with the token of the customer who owns it.  wrk -s read.lua URL -- <pool file> <report.lua>
-- Pool file: one "subscription_id<TAB>token" per line.
local pool, n, i = {}, 0, 0

function init(args)
   for line in io.lines(args[1]) do
      local id, token = line:match("^(%S+)\t(%S+)$")
      if id then
         n = n + 1
         pool[n] = {"/v1/subscriptions/" .. id, {["Authorization"] = "Bearer " .. token}}
      end
   end
   i = (offset or 0) % n
end

function request()
   i = i % n + 1
   local p = pool[i]
   return wrk.format("GET", p[1], p[2])
end

function setup(thread)
   thread:set("offset", math.random(0, 1000000))
end

function done(summary, latency, requests)
   dofile(os.getenv("BENCH_REPORT_LUA"))
   report(summary, latency)
end
