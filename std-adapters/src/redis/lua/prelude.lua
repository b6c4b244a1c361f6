-- ratebound: helpers shared by the scripts. Exact integer arithmetic in Lua
-- doubles: every stored or returned number is below 2^53; products that may
-- not be go through mul_div (bitwise long division, never a*b/c in doubles).
-- This is a port of ratebound-core; fixtures/README.md is the contract.

local MAXT = 4503599627370495 -- 2^52 - 1: Instant::MAX (times saturate here)
local SAFE = 9007199254740991 -- 2^53 - 1

-- x = q*a + r exactly, for 0 <= x < 2^53, a >= 1 (fmod is exact).
local function divmod(x, a)
  local r = math.fmod(x, a)
  return (x - r) / a, r
end

local function sat(x)
  if x > MAXT then return MAXT end
  return x
end

-- Base-2^24 limbs of 0 <= x < 2^72, least significant first.
local L = 16777216
local function limbs(x)
  local q1, r0 = divmod(x, L)
  local q2, r1 = divmod(q1, L)
  return { r0, r1, q2 }
end

-- floor(a*b/c) and the remainder, exactly, for a, b, c < 2^53, c >= 1.
-- Results at or above 2^53 saturate to SAFE (core saturates at u64::MAX;
-- no caller lets them get there).
local function mul_div(a, b, c)
  if a == 0 or b == 0 then return 0, 0 end
  if a * b <= SAFE then -- exact below 2^53; above, the double is >= 2^53
    return divmod(a * b, c)
  end
  local x, y = limbs(a), limbs(b)
  local p = { 0, 0, 0, 0, 0, 0 }
  for i = 1, 3 do
    for j = 1, 3 do
      p[i + j - 1] = p[i + j - 1] + x[i] * y[j]
    end
  end
  for i = 1, 5 do -- carry: each limb back below 2^24
    local q, r = divmod(p[i], L)
    p[i] = r
    p[i + 1] = p[i + 1] + q
  end
  -- Restoring division, one bit at a time, with r < c < 2^53 throughout:
  -- 2r + bit >= c  <=>  r + bit >= c - r, and then 2r + bit - c = r - (c - r) + bit.
  local q, r = 0, 0
  for i = 6, 1, -1 do
    local limb = p[i]
    for k = 23, 0, -1 do
      local bit = math.floor(limb / 2 ^ k) % 2
      local t = c - r
      q = q * 2
      if r + bit >= t then
        r = r - t + bit
        q = q + 1
      else
        r = r + r + bit
      end
      if q > SAFE then q = SAFE end
    end
  end
  return q, r
end

local function mul_div_floor(a, b, c)
  local q = mul_div(a, b, c)
  return q
end

local function mul_div_ceil(a, b, c)
  local q, r = mul_div(a, b, c)
  if r > 0 and q < SAFE then q = q + 1 end
  return q
end

-- A stored integer field; a missing one is `default`, a malformed one an error
-- (never read as 0, which could mean "full" and grant capacity).
local function int_field(v, default)
  if v == false or v == nil then return default end
  local n = tonumber(v)
  if n == nil or n < 0 or n > SAFE or n % 1 ~= 0 then
    error("ratebound: corrupt state field " .. tostring(v))
  end
  return n
end

-- Integers as decimal strings: Lua's own tostring switches to exponent
-- notation above 1e14, losing digits.
local function int_str(x)
  return string.format("%d", x)
end

-- A limiter's state is one string "<kind>|<field>|<field>…" set with its TTL
-- in one command (cheaper than a hash plus PEXPIRE). A GCRA state whose
-- fraction is 0 is stored as its TAT alone, a plain integer: reading it
-- back is one tonumber.
local function load_state(key)
  local raw = redis.call("GET", key)
  if raw == false then return nil, {} end
  if string.find(raw, "|", 1, true) == nil then return "g", { raw, "0" } end
  local fields, pos = {}, 1
  while true do
    local bar = string.find(raw, "|", pos, true)
    if bar == nil then
      fields[#fields + 1] = string.sub(raw, pos)
      break
    end
    fields[#fields + 1] = string.sub(raw, pos, bar - 1)
    pos = bar + 1
  end
  return fields[1], { fields[2], fields[3], fields[4] }
end

-- TTLs in whole milliseconds are below 1e14, which Redis writes without an
-- exponent, so they are passed as numbers.
local function store_state(key, kind, fields, ttl_ms)
  redis.call("SET", key, kind .. "|" .. table.concat(fields, "|"), "PX", ttl_ms)
end

local function store_gcra(key, tat, rem, ttl_ms)
  if rem == 0 then
    redis.call("SET", key, string.format("%d", tat), "PX", ttl_ms)
  else
    redis.call("SET", key, string.format("g|%d|%d", tat, rem), "PX", ttl_ms)
  end
end

-- The call's `now` from its first argument, `[caller µs][@deadline µs]`:
-- an empty time part means Redis TIME. With a deadline (Redis time), a call
-- that starts after it (Redis was stalled, the caller has given up) gets
-- nil: its entry point answers late_reply() before writing anything, so it
-- charges nothing.
local function late_reply()
  return redis.error_reply("LATE the call reached the server after its deadline")
end

local function now_us(arg)
  local at = string.find(arg, "@", 1, true)
  if at then
    local t = redis.call("TIME")
    local server = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if server > tonumber(string.sub(arg, at + 1)) then return nil end
    if at == 1 then return sat(server) end
    return sat(tonumber(string.sub(arg, 1, at - 1)))
  end
  if arg == "" then
    local t = redis.call("TIME")
    return sat(tonumber(t[1]) * 1000000 + tonumber(t[2]))
  end
  return sat(tonumber(arg))
end

-- A full log of { at, cost } entries (oldest first) merges its two closest
-- adjacent entries (the oldest pair on a tie) into the later one, freeing a
-- slot (false when there is no pair): a unit then counts for longer, never
-- shorter (core's sliding_log::closest_pair, for the sliding log and model
-- quotas).
local function merge_closest(entries)
  local best, gap = nil, nil
  for i = 1, #entries - 1 do
    local g = entries[i + 1][1] - entries[i][1]
    if g < 0 then g = 0 end
    if gap == nil or g < gap then best, gap = i, g end
  end
  if best == nil then return false end
  entries[best + 1] = { entries[best + 1][1], entries[best + 1][2] + entries[best][2] }
  table.remove(entries, best)
  return true
end

-- ------------------------------------------------------------------ GCRA

-- A rem of a finer unit than this config's (written under another config)
-- was less than one µs past tat: the next whole µs is never early.
local function g_norm(c, tat, rem)
  if rem < c.a then return tat, rem end
  return tat + 1, 0
end

local function g_add(c, xu, xf, yu, yf)
  local f = xf + yf
  if f >= c.a then return xu + yu + 1, f - c.a end
  return xu + yu, f
end

local function g_sub(c, xu, xf, yu, yf) -- x >= y
  if xf >= yf then return xu - yu, xf - yf end
  return xu - yu - 1, xf + c.a - yf
end

local function g_inc(c, n)
  local x = n * c.p
  if c.a == 1 then return x, 0 end
  return divmod(x, c.a)
end

local function g_ceil(u, f)
  if f > 0 then return u + 1 end
  return u
end

local function le(xu, xf, yu, yf)
  return xu < yu or (xu == yu and xf <= yf)
end

local function g_position(c, st, now)
  local tu, tf = g_norm(c, st.tat, st.rem)
  local bu, bf = tu, tf
  if tu < now then bu, bf = now, 0 end
  local lu, lf = now + c.tau_us, c.tau_rem
  local avail = 0
  if le(bu, bf, lu, lf) then
    local du, df = g_sub(c, lu, lf, bu, bf)
    local x = du * c.a + df
    if x < c.p then
      avail = 0
    elseif x == c.capacity * c.p then
      avail = c.capacity
    else
      avail = divmod(x, c.p)
    end
  end
  return bu, bf, avail
end

-- decision {status, remaining, limit, reset, retry}, and the next state
local function g_decide(c, st, now, cost)
  if cost > c.capacity then return { -1, 0, 0, 0, 0 }, nil end
  if c.a == 1 and st.rem == 0 then
    -- A whole-µs interval: every position is an integer, and the steps
    -- below reduce to plain arithmetic.
    local p, cap = c.p, c.capacity
    local b = st.tat
    if b < now then b = now end
    local x = now + c.tau_us - b
    local avail = 0
    if x >= p then
      if x == cap * p then avail = cap else avail = (x - x % p) / p end
    end
    local new = b + cost * p
    if cost <= avail then
      local next = nil
      if cost > 0 then next = { tat = new, rem = 0 } end
      return { 1, avail - cost, cap, sat(new), now }, next
    end
    return { 0, avail, cap, sat(b), sat(new - c.tau_us) }, nil
  end
  local bu, bf, avail = g_position(c, st, now)
  local iu, if_ = g_inc(c, cost)
  local nu, nf = g_add(c, bu, bf, iu, if_)
  if cost <= avail then
    local next = nil -- a cost of 0 changes nothing
    if cost > 0 then next = { tat = nu, rem = nf } end
    return { 1, avail - cost, c.capacity, sat(g_ceil(nu, nf)), now }, next
  end
  local xu, xf = g_sub(c, nu, nf, c.tau_us, c.tau_rem)
  return { 0, avail, c.capacity, sat(g_ceil(bu, bf)), sat(g_ceil(xu, xf)) }, nil
end

