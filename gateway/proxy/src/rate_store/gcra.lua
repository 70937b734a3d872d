-- GCRA for a request's rate steps, atomically in the server: the core's Gcra::apply
-- (gateway/core/src/ratelimit.rs) in microseconds, step after step, stopping at the first
-- refusal (a refused step stores nothing; the steps before it keep what they counted,
-- as the in-process store does).
--   KEYS[i]        the TAT key of step i
--   ARGV[1]        now in microseconds; 0 = the server's clock (TIME), so that every
--                  gateway counts on one clock
--   ARGV[2i]       step i's emission interval in microseconds (>= 1)
--   ARGV[2i+1]     step i's burst (>= 1)
-- Returns one {allowed, limit, remaining, reset_after_us, retry_after_us} per step
-- answered. Lua numbers are doubles: microseconds since 1970 (~1.8e15) are exact below
-- 2^53, and string.format('%d') stores them without an exponent.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local window = interval * burst
  local allow_at = new_tat - window
  if now < allow_at then
    out[#out + 1] = {0, burst, 0, tat - now, allow_at - now}
    return out
  end
  local remaining = math.floor((window - (new_tat - now)) / interval)
  -- The key lives as long as it matters: until its TAT is in the past.
  redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  out[#out + 1] = {1, burst, remaining, new_tat - now, 0}
end
return out
