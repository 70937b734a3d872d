-- wrk script: each request carries the next bearer token from $TOKENS (round robin), for
-- host $HOST. With `-t1`, tokens are used in order across all connections, so a file of
-- N distinct tokens gives N distinct tokens before the first repeats. $DELAY_MS > 0 paces
-- each connection (for the fixed-rate latency run).
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local host = os.getenv("HOST") or "bench.test"
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local path = (os.getenv("PATH_PREFIX") or "") .. "/api/items"
-- $OFFSET: where in the file to start, so that later rounds use tokens never seen before.
local i = tonumber(os.getenv("OFFSET") or "0")

-- $EXTRA_HEADER / $EXTRA_VALUE: one more header (e.g. CF-Connecting-IP for the Worker).
local extra_name, extra_value = os.getenv("EXTRA_HEADER"), os.getenv("EXTRA_VALUE")

request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  local headers = { ["Host"] = host, ["Authorization"] = "Bearer " .. t }
  if extra_name then headers[extra_name] = extra_value end
  return wrk.format("GET", path, headers)
end

if delay_ms > 0 then
  delay = function() return delay_ms end
end
