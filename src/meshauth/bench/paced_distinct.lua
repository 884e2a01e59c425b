-- paced.lua's open pacing, and every request to a path never asked before: PACE_PATH_PREFIX followed by
-- a counter (the prefix carries a per-run nonce), so each ext_authz check is a distinct decision.
local mean_ms = tonumber(os.getenv("PACE_MEAN_MS") or "10")
local prefix = os.getenv("PACE_PATH_PREFIX") or "/"
local counter = 0

function delay()
  return math.random() * 2 * mean_ms
end

function request()
  counter = counter + 1
  return wrk.format(nil, prefix .. counter)
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("PACED rps=%.1f p50=%.4f p95=%.4f p99=%.4f errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, errors))
end
