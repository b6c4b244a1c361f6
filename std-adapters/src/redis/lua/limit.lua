-- ratebound: one decision over one or more limiters, all or nothing.
--
-- State: one string per key, "<kind>|<field>|…" (g: tat|rem; l: last|at:cost,…;
--   c: start|prev|curr), expiring once the limiter is idle.
-- KEYS: one state key per member (in a cluster: one hash tag for all).
-- ARGV: now_us ("" = Redis TIME), ttl_margin_ms, mode ("check" | "peek" |
--   "at_most" | "refund"), "1" to return the states (tests) else "0",
--   member count, then per member:
--   kind ("g" gcra | "l" sliding log | "c" sliding counter), cost, and its
--   config: g: capacity p a tau_us tau_rem; l: limit window_us slots;
--   c: limit window_us.
-- Returns: { now, { status, remaining, limit, reset_at, retry_at, taken
--   [, state...] } per member }, or, for one GCRA checked with a whole-µs
--   interval, { now, status, remaining, reset_at, retry_at [, tat, rem] };
--   status 1 allowed, 0 denied, -1 cost can never fit.
-- "at_most" and "refund" take exactly one gcra member.

-- ------------------------------------------------------------ sliding log

local function l_parse(raw)
  local out = {}
  if raw == false or raw == nil or raw == "" then return out end
  for at, cost in string.gmatch(raw, "(%d+):(%d+)") do
    -- Digits only, so each is a non-negative integer; only its size needs
    -- checking.
    local a, n = tonumber(at), tonumber(cost)
    if a > SAFE or n > SAFE then error("ratebound: corrupt state field " .. at .. ":" .. cost) end
    out[#out + 1] = { a, n }
  end
  return out
end

local function l_decide(c, st, now, cost)
  if cost > c.limit then return { -1, 0, 0, 0, 0 }, nil end
  local n = math.max(now, st.last)
  local entries = st.entries
  local expired, used, prefix = 0, 0, true
  for i = 1, #entries do
    local e = entries[i]
    if prefix and e[1] + c.window <= n then
      expired = expired + 1
    else
      prefix = false
      used = used + e[2]
    end
  end
  local live = #entries - expired
  local newest = entries[#entries] and entries[#entries][1] or nil
  local room = math.max(0, c.limit - used)
  if cost == 0 or cost <= room then
    local push_at = nil
    if cost > 0 then
      push_at = n
      if newest ~= nil and newest > n then push_at = newest end
    end
    local last = push_at
    if last == nil and live > 0 then last = newest end
    local reset = now
    if last ~= nil then reset = sat(last + c.window) end
    local next_entries = {}
    for i = expired + 1, #entries do next_entries[#next_entries + 1] = entries[i] end
    if push_at then
      if #next_entries >= c.slots and not merge_closest(next_entries) then
        -- One slot and it is taken: the new unit joins that entry, at now.
        local e = next_entries[#next_entries]
        next_entries[#next_entries] = { push_at, e[2] + cost }
      else
        next_entries[#next_entries + 1] = { push_at, cost }
      end
    end
    return { 1, room - cost, c.limit, reset, now }, { last = math.max(st.last, now), entries = next_entries }
  end
  local freed, retry = 0, n
  for k = 1, live do
    local e = entries[expired + k]
    freed = freed + e[2]
    if math.max(0, used - freed) + cost <= c.limit then
      retry = sat(e[1] + c.window)
      break
    end
  end
  local reset = n
  if newest ~= nil then reset = sat(newest + c.window) end
  return { 0, room, c.limit, reset, retry }, nil
end

-- -------------------------------------------------------- sliding counter

local function c_elapsed_for(c, prev, k)
  if k >= prev then return 0 end
  return c.window - mul_div_floor(k, c.window, prev)
end

local function c_decide(c, st, now, cost)
  if cost > c.limit then return { -1, 0, 0, 0, 0 }, nil end
  local w = c.window
  local start = now - math.fmod(now, w)
  local s_start = st.start
  local r0 = math.fmod(s_start, w)
  if r0 ~= 0 then s_start = s_start + (w - r0) end
  local r = { start = start, prev = st.prev, curr = st.curr }
  local el
  if start == s_start then
    el = now - start
  elseif start > s_start then
    local prev = 0
    if start - s_start == w then prev = st.curr end
    r = { start = start, prev = prev, curr = 0 }
    el = now - start
  else
    r.start = s_start
    el = 0
  end
  local weighted = mul_div_ceil(r.prev, w - el, w)
  local avail = math.max(0, math.max(0, c.limit - r.curr) - weighted)
  local allowed = cost <= avail
  local retry
  if allowed then
    retry = now
  elseif r.curr + cost <= c.limit then
    retry = sat(r.start + c_elapsed_for(c, r.prev, c.limit - r.curr - cost))
  else
    retry = sat(r.start + w + c_elapsed_for(c, r.curr, c.limit - cost))
  end
  if allowed then r.curr = r.curr + cost end
  local reset
  if r.curr > 0 then
    reset = sat(r.start + 2 * w)
  elseif r.prev > 0 then
    reset = sat(r.start + w)
  else
    reset = now
  end
  local remaining = avail
  if allowed then remaining = avail - cost end
  local status = 0
  if allowed then status = 1 end
  if allowed and cost > 0 then return { status, remaining, c.limit, reset, retry }, r end
  return { status, remaining, c.limit, reset, retry }, nil
end

-- ------------------------------------------------------------- dispatch

local function limit_load(m)
  local kind, h = load_state(m.key)
  if kind ~= nil and kind ~= m.kind then
    error("ratebound: key " .. m.key .. " holds another kind of limiter (" .. tostring(kind) .. ")")
  end
  if m.kind == "g" then
    return { tat = int_field(h[1], 0), rem = int_field(h[2], 0) }
  elseif m.kind == "l" then
    return { last = int_field(h[1], 0), entries = l_parse(h[2]) }
  end
  return { start = int_field(h[1], 0), prev = int_field(h[2], 0), curr = int_field(h[3], 0) }
end

local function limit_state_out(m, st, row)
  if m.kind == "g" then
    row[#row + 1] = st.tat; row[#row + 1] = st.rem
  elseif m.kind == "l" then
    row[#row + 1] = st.last
    for _, e in ipairs(st.entries) do row[#row + 1] = e[1]; row[#row + 1] = e[2] end
  else
    row[#row + 1] = st.start; row[#row + 1] = st.prev; row[#row + 1] = st.curr
  end
  return row
end

-- Idle (indistinguishable from a fresh state) once `reset` has passed; the
-- margin covers callers whose clock runs behind Redis's.
local function limit_ttl(reset, now, margin)
  return math.max(1, math.ceil(math.max(0, reset - now) / 1000)) + margin
end

local function limit_store(m, st, ttl)
  if m.kind == "g" then
    store_gcra(m.key, st.tat, st.rem, ttl)
  elseif m.kind == "l" then
    local parts = {}
    for _, e in ipairs(st.entries) do parts[#parts + 1] = string.format("%d:%d", e[1], e[2]) end
    store_state(m.key, "l", { int_str(st.last), table.concat(parts, ",") }, ttl)
  else
    store_state(m.key, "c", { int_str(st.start), int_str(st.prev), int_str(st.curr) }, ttl)
  end
end

local function limit_decide(m, st, now)
  if m.kind == "g" then return g_decide(m.c, st, now, m.cost) end
  if m.kind == "l" then return l_decide(m.c, st, now, m.cost) end
  return c_decide(m.c, st, now, m.cost)
end

-- The general path: any members, any mode.
local function limit_general(KEYS, ARGV, now)
  local margin = tonumber(ARGV[2])
  local mode = ARGV[3]
  local want_state = ARGV[4] == "1"
  local count = tonumber(ARGV[5])
  local members, i = {}, 6
  for m = 1, count do
    local kind = ARGV[i]
    local cost = tonumber(ARGV[i + 1])
    local c
    if kind == "g" then
      c = { capacity = tonumber(ARGV[i + 2]), p = tonumber(ARGV[i + 3]), a = tonumber(ARGV[i + 4]),
            tau_us = tonumber(ARGV[i + 5]), tau_rem = tonumber(ARGV[i + 6]) }
      i = i + 7
    elseif kind == "l" then
      c = { limit = tonumber(ARGV[i + 2]), window = tonumber(ARGV[i + 3]), slots = tonumber(ARGV[i + 4]) }
      i = i + 5
    elseif kind == "c" then
      c = { limit = tonumber(ARGV[i + 2]), window = tonumber(ARGV[i + 3]) }
      i = i + 4
    else
      return redis.error_reply("ERR ratebound: unknown limiter kind " .. tostring(kind))
    end
    members[m] = { kind = kind, cost = cost, c = c, key = KEYS[m] }
  end

  local out = { now }

  if mode == "at_most" or mode == "refund" then
    local m = members[1]
    local c, st = m.c, limit_load(m)
    local d, next, taken = nil, nil, 0
    if mode == "at_most" then
      local _, _, avail = g_position(c, st, now)
      local want = math.min(m.cost, avail)
      local cost = want
      if want == 0 and m.cost > 0 then cost = 1 end
      d, next = g_decide(c, st, now, cost)
      if d[1] == 1 then
        taken = want
        if want == 0 then next = nil end
      else
        next = nil
      end
    else
      local n = math.min(m.cost, c.capacity)
      local tu, tf = g_norm(c, st.tat, st.rem)
      if not le(tu, tf, now, 0) then
        local bu, bf = g_inc(c, n)
        local au, af = g_add(c, now, 0, bu, bf)
        local lu, lf = now, 0
        if le(au, af, tu, tf) then lu, lf = g_sub(c, tu, tf, bu, bf) end
        next = { tat = lu, rem = lf }
        st = next
      end
      d = g_decide(c, st, now, 0)
    end
    if next then limit_store(m, next, limit_ttl(d[4], now, margin)) end
    local row = { d[1], d[2], d[3], d[4], d[5], taken }
    if want_state then limit_state_out(m, next or st, row) end
    out[2] = row
    return out
  end

  -- check / peek: decide every member first; write only if all allow.
  local states, decisions, nexts, all = {}, {}, {}, true
  for m = 1, count do
    states[m] = limit_load(members[m])
    decisions[m], nexts[m] = limit_decide(members[m], states[m], now)
    if decisions[m][1] ~= 1 then all = false end
  end
  for m = 1, count do
    local st = states[m]
    if mode == "check" and all and nexts[m] then
      limit_store(members[m], nexts[m], limit_ttl(decisions[m][4], now, margin))
      st = nexts[m]
    end
    local d = decisions[m]
    local row = { d[1], d[2], d[3], d[4], d[5], 0 }
    if want_state then limit_state_out(members[m], st, row) end
    out[m + 1] = row
  end
  return out
end

-- The common call on its own path: one GCRA checked whose emission interval
-- is a whole number of microseconds (`a` is 1, so every position is an
-- integer), written out from core's GCRA arithmetic for that case: seven
-- arguments, one GET, one SET and a flat reply. ARGV: now_us ("" = Redis
-- TIME), ttl_margin_ms, "1" for the state else "0", cost, capacity, p
-- (the interval, µs), tau_us. Returns { now, status, remaining, reset_at,
-- retry_at [, tat, rem] }. Anything it cannot decide (another kind or a
-- corrupt value in the key, a cost above capacity) goes to the general
-- path, which says what is wrong.
local function gcra(KEYS, ARGV)
  local cost, cap, p, tau = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local now = now_us(ARGV[1])
  if now == nil then return late_reply() end
  local key = KEYS[1]
  local raw = redis.call("GET", key)
  local tat = 0
  if raw then tat = tonumber(raw) end
  if cost <= cap and tat ~= nil and tat >= 0 and tat <= SAFE and tat % 1 == 0 then
    local b = tat
    if b < now then b = now end
    -- Tokens available: the whole intervals between `b` and `now + tau`.
    local x = now + tau - b
    local avail = 0
    if x >= p then
      if x == cap * p then avail = cap else avail = (x - x % p) / p end
    end
    local new = b + cost * p
    local r
    if cost <= avail then
      local reset = sat(new)
      if cost > 0 then
        -- `reset` > `now` here, so the TTL is at least 1 ms plus the margin.
        redis.call("SET", key, string.format("%d", new), "PX", math.ceil((reset - now) / 1000) + ARGV[2])
        tat = new
      end
      r = { now, 1, avail - cost, reset, now }
    else
      r = { now, 0, avail, sat(b), sat(new - tau) }
    end
    if ARGV[3] == "1" then r[6] = tat; r[7] = 0 end
    return r
  end
  local general = { ARGV[1], ARGV[2], "check", ARGV[3], "1", "g", ARGV[4], ARGV[5], ARGV[6], "1", ARGV[7], "0" }
  local out = limit_general(KEYS, general, now)
  local row = out[2]
  local flat = { out[1], row[1], row[2], row[4], row[5] }
  for k = 7, #row do flat[#flat + 1] = row[k] end
  return flat
end

local function limit(KEYS, ARGV)
  local now = now_us(ARGV[1])
  if now == nil then return late_reply() end
  return limit_general(KEYS, ARGV, now)
end
