-- paced.lua's fixed offered rate, and every request to a path never asked before: PACE_PATH_PREFIX
-- followed by a counter (the prefix carries a per-run nonce), so each ext_authz check is a distinct decision.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "paced.lua")
local prefix = os.getenv("PACE_PATH_PREFIX") or "/"
local counter = 0

function request()
  counter = counter + 1
  return wrk.format(nil, prefix .. counter)
end
