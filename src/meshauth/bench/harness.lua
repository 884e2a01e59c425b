-- The harness's wrk script. Requests come from HARNESS_LINES (one per line: path, TAB, authorization
-- header or empty, TAB, POST body or empty), walked in order and wrapped around (the Zipf lists are
-- precomputed samples, so order is already random); or, with HARNESS_DISTINCT_PREFIX, a path never
-- asked before (prefix .. counter). PACE_RATE > 0: that many requests/s, open-loop arrivals
-- (pacing.lua); 0 or unset: closed loop (saturation). An authorization of
-- the form "@<n>" stands for "Bearer " and line n (1-based) of HARNESS_TOKENS (the 10,000 users' tokens
-- would make every request file tens of MB). Every answer's HTTP
-- status is counted (response()), so the results break errors down by status.
local pacing = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "pacing.lua")
local prefix = os.getenv("HARNESS_DISTINCT_PREFIX")
local lines_file = os.getenv("HARNESS_LINES")
local tokens_file = os.getenv("HARNESS_TOKENS")
local items = {}
local n = 0
local counter = 0
local tokens = {}

if tokens_file and tokens_file ~= "" then
  for line in io.lines(tokens_file) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
end

if lines_file and lines_file ~= "" then
  for line in io.lines(lines_file) do
    local path, auth, body = line:match("^([^\t]*)\t?([^\t]*)\t?(.*)$")
    if auth:sub(1, 1) == "@" then
      auth = tokens[tonumber(auth:sub(2))] or error("no token " .. auth .. " in HARNESS_TOKENS")
    end
    n = n + 1
    items[n] = {path, auth, body}
  end
end

delay = pacing.delay(tonumber(os.getenv("PACE_RATE") or "0"))

function request()
  counter = counter + 1
  if prefix then
    return wrk.format(nil, prefix .. counter)
  end
  if n == 0 then
    return wrk.format(nil, nil)
  end
  local item = items[(counter - 1) % n + 1]
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  local method = nil
  local body = nil
  if item[2] ~= "" then headers["Authorization"] = item[2] end
  if item[3] ~= "" then
    method = "POST"
    body = item[3]
    headers["Content-Type"] = "application/json"
  end
  return wrk.format(method, item[1], headers, body)
end

local threads = {}
statuses = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("HARNESS requests=%d seconds=%.3f errors=%d status_errors=%d\n",
    summary.requests, summary.duration / 1e6, errors, summary.errors.status))
  io.write(string.format("SOCKET connect=%d read=%d write=%d timeout=%d\n", summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
  local total = {}
  local late = 0
  for _, t in ipairs(threads) do
    late = late + (t:get("late") or 0)
    for code, n in pairs(t:get("statuses") or {}) do total[code] = (total[code] or 0) + n end
  end
  io.write(string.format("LATE %d\n", late))
  for code, n in pairs(total) do io.write(string.format("STATUS %d %d\n", code, n)) end
  for _, p in ipairs({1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99}) do
    io.write(string.format("PCT %g %.4f\n", p, latency:percentile(p) / 1000))
  end
end
