-- Open-loop arrivals for wrk (loaded by paced.lua, paced_distinct.lua, harness.lua and the token bench).
--
-- wrk calls delay() when a response has arrived and waits that long before the connection's next
-- request. A random think time there (what these scripts did before) is a closed loop: the offered rate
-- falls as latency grows (30 connections with 10 ms think time offer 3,000 req/s only at zero latency;
-- at ~1 ms mean latency they offered ~2,700). Here the arrivals are one Poisson process of PACE_RATE
-- requests/s for the wrk thread, fixed in advance: each delay() takes the next arrival time and waits
-- until it, or not at all when it is already past. The connections are the pool that serves the
-- arrivals, so the offered rate holds whatever the latency until every connection is busy.
--
-- What wrk measures is still from the send, not from the arrival: a request that found no free
-- connection was sent late, and that wait is not in its latency (coordinated omission). LATE counts the
-- requests sent more than 1 ms after their arrival time, so a report can show when that happened.
-- (wrk itself adds synthetic samples for every latency of two or more mean per-connection intervals,
-- its stats_correct: a stall's missing requests are in its percentiles either way.)
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } meshauth_pace_timespec;
int clock_gettime(int clk_id, meshauth_pace_timespec *tp);
]]

local CLOCK_MONOTONIC = 1
local ts = ffi.new("meshauth_pace_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local pacing = {}

-- A delay() for wrk offering `rate` requests/s from this thread; nil when rate is not positive (closed
-- loop: no delay at all).
function pacing.delay(rate)
  if not rate or rate <= 0 then
    return nil
  end
  local mean_gap = 1000 / rate
  local next_at = nil
  return function()
    local now = now_ms()
    if next_at == nil then
      next_at = now
    end
    -- 1 - random() is in (0, 1]: no log(0)
    next_at = next_at - math.log(1 - math.random()) * mean_gap
    local wait = next_at - now
    if wait < -1 then
      late = (late or 0) + 1
    end
    if wait < 0 then
      return 0
    end
    return wait
  end
end

-- This thread's count of late sends (a global, so done() can read it from each thread).
function pacing.late()
  return late or 0
end

return pacing
