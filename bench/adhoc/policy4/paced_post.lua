-- Paced POSTs (as paced.lua) of an AuthZEN body with distinct resource ids per request.
-- BENCH_PATH: the path; BENCH_ITEMS: items per call (0: a single `evaluation`).
local mean_ms = tonumber(os.getenv("PACE_MEAN_MS") or "10")
local path = os.getenv("BENCH_PATH") or "/access/v1/evaluations"
local items = tonumber(os.getenv("BENCH_ITEMS") or "3")
local closed = os.getenv("BENCH_CLOSED") == "1"
local tag = tostring(math.random(1000000))
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local ctx = '"context":{"scope":["openid","documents:read"],"client_id":"bench"}'
local function item(k)
  return '{"subject":{"type":"Client","id":"bench"},"action":{"name":"read"},"resource":{"type":"Document","id":"c' .. tag .. '-' .. n .. '-' .. k .. '"},' .. ctx .. '}'
end
if not closed then
  function delay()
    return math.random() * 2 * mean_ms
  end
end
request = function()
  n = n + 1
  local body
  if items == 0 then
    body = item(0)
  else
    local parts = {}
    for k = 1, items do parts[k] = item(k) end
    body = '{"evaluations":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format(nil, path, nil, body)
end
function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("PACED rps=%.1f p50=%.4f p95=%.4f p99=%.4f errors=%d n=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, errors, summary.requests))
end
