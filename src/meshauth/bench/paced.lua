-- Fixed offered rate for wrk: PACE_RATE requests/s from this thread, open-loop Poisson arrivals
-- (pacing.lua). Prints one summary line the benchmark reads.
local pacing = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "pacing.lua")
delay = pacing.delay(tonumber(os.getenv("PACE_RATE") or "0"))

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  local late = 0
  for _, t in ipairs(threads) do late = late + (t:get("late") or 0) end
  io.write(string.format("PACED rps=%.1f p50=%.4f p95=%.4f p99=%.4f errors=%d late=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, errors, late))
end
