-- Open pacing for wrk: each connection waits a random 0..2*PACE_MEAN_MS before its next request, so the
-- connections' requests interleave at random instead of arriving in synchronized bursts (hey's workers
-- all tick together). Mean offered rate = connections * 1000 / PACE_MEAN_MS req/s.
local mean_ms = tonumber(os.getenv("PACE_MEAN_MS") or "10")

function delay()
  return math.random() * 2 * mean_ms
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("PACED rps=%.1f p50=%.4f p95=%.4f p99=%.4f errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, errors))
end
