-- ratebound: model quotas, a port of ratebound-core's model_quota module
-- (its docs state the rules; fixtures/traces/model_quota.json guards them).
--
-- KEYS[1]: the state of one subject and model (see m_parse).
-- ARGV: now_us ("" = Redis TIME), ttl_margin_ms, op ("admit" | "settle" |
--   "peek"), hold id, outcome ("success" | "failure"), with_state ("1"/"0"),
--   total_max (0 = unlimited), success_max, period_us, window ("sliding" |
--   "bucket"), hold_ttl_us, then for a bucket window the total's and the
--   success's GCRA (p a tau_us tau_rem each; "0 1 0 0" otherwise).
-- Returns for admit/peek { now, hold (-1: none), in_flight, blocked (0 none,
-- 1 total, 2 success, 3 in_flight), total row or {}, success row [, state] },
-- rows as { status, remaining, limit, reset_at, retry_at }; for settle
-- { now, held (1) or lapsed (0) [, state] }.

local M_LOG_SLOTS = 16
local M_MAX_IN_FLIGHT = 64
local M_IN_FLIGHT_RETRY = 1000000

-- The state is one flat list of integers, stored as MessagePack (the
-- cmsgpack library in Redis: C code, integers kept exact below 2^53):
-- last next_id | n_total_log (at cost)* | total_tat total_rem |
-- n_success_log (at cost)* | success_tat success_rem | n_holds (id expires)*.
local function m_parse(raw)
  local ok, v = pcall(cmsgpack.unpack, raw)
  if not ok or type(v) ~= "table" then error("ratebound: corrupt model state") end
  local i = 0
  local function take()
    i = i + 1
    local x = v[i]
    if type(x) ~= "number" or x < 0 or x > SAFE or x % 1 ~= 0 then
      error("ratebound: corrupt model state")
    end
    return x
  end
  local function pairs_of(most)
    local n, out = take(), {}
    if n > most then error("ratebound: corrupt model state") end
    for k = 1, n do out[k] = { take(), take() } end
    return out
  end
  local st = { last = take(), next_id = take() }
  st.tlog = pairs_of(M_LOG_SLOTS)
  st.tb = { tat = take(), rem = take() }
  st.slog = pairs_of(M_LOG_SLOTS)
  st.sb = { tat = take(), rem = take() }
  st.holds = pairs_of(M_MAX_IN_FLIGHT)
  if i ~= #v then error("ratebound: corrupt model state") end
  return st
end

local function m_flat(st)
  local out = { st.last, st.next_id }
  local function put(list)
    out[#out + 1] = #list
    for _, e in ipairs(list) do
      out[#out + 1] = e[1]
      out[#out + 1] = e[2]
    end
  end
  put(st.tlog)
  out[#out + 1] = st.tb.tat
  out[#out + 1] = st.tb.rem
  put(st.slog)
  out[#out + 1] = st.sb.tat
  out[#out + 1] = st.sb.rem
  put(st.holds)
  return out
end

local function m_used(log)
  local s = 0
  for _, e in ipairs(log) do s = s + e[2] end
  return s
end

-- Drop the units that left the window. Entries are in time order (written
-- at clamped, rising times; merges keep the order), so they are a prefix.
local function m_prune(log, now, period)
  local k = 0
  while log[k + 1] ~= nil and log[k + 1][1] + period <= now do k = k + 1 end
  if k == 0 then return log end
  local out = {}
  for i = k + 1, #log do out[#out + 1] = log[i] end
  return out
end

local function m_record(log, now)
  local last = log[#log]
  if last ~= nil and last[1] == now then
    last[2] = last[2] + 1
    return
  end
  if #log >= M_LOG_SLOTS then merge_closest(log) end -- 16 slots: a pair exists
  log[#log + 1] = { now, 1 }
end

local function m_frees_at(log, period, deficit)
  local acc = 0
  for _, e in ipairs(log) do
    acc = acc + e[2]
    if acc >= deficit then return sat(e[1] + period) end
  end
  return nil
end

local function m_denied(limit, remaining, reset, retry)
  return { 0, remaining, limit, math.max(reset, retry), retry }
end

local function m_sliding_view(n, period, log, max, held, extra, which)
  local used = m_used(log)
  local want = used + held + extra
  local newest = n
  if #log > 0 then newest = sat(log[#log][1] + period) end
  if want <= max then
    local reset = newest
    if held + extra > 0 then reset = math.max(newest, sat(n + period)) end
    return { 1, max - want, max, reset, n }, 0
  end
  local frees = m_frees_at(log, period, want - max)
  local alone_fits = used + extra <= max
  local remaining = max - (used + held)
  if remaining < 0 then remaining = 0 end
  local cap = sat(n + M_IN_FLIGHT_RETRY)
  if held > 0 and (alone_fits or frees == nil) then
    local at = cap
    if frees ~= nil and frees < cap then at = frees end
    return m_denied(max, remaining, newest, at), 3
  end
  return m_denied(max, remaining, newest, frees or cap), which
end

local function m_bucket_view(n, c, b, held, extra, which)
  local cap = c.capacity
  local want = held + extra
  local full = nil
  if want <= cap then
    full = g_decide(c, b, n, want)
    if full[1] == 1 then return full, 0 end
  end
  local alone = g_decide(c, b, n, extra)
  local remaining = g_decide(c, b, n, 0)[2] - held
  if remaining < 0 then remaining = 0 end
  if held > 0 and alone[1] == 1 then
    local at = sat(n + M_IN_FLIGHT_RETRY)
    if full ~= nil and full[5] < at then at = full[5] end
    return m_denied(cap, remaining, alone[4], at), 3
  end
  local at = alone[5]
  if full ~= nil then at = full[5] end
  return m_denied(cap, remaining, alone[4], at), which
end

local function model(KEYS, ARGV)
  local now = now_us(ARGV[1])
  if now == nil then return late_reply() end
  local margin = tonumber(ARGV[2])
  local op = ARGV[3]
  local id = tonumber(ARGV[4])
  local success_outcome = ARGV[5] == "success"
  local with_state = ARGV[6] == "1"
  local tmax, smax = tonumber(ARGV[7]), tonumber(ARGV[8])
  local period = tonumber(ARGV[9])
  local bucket = ARGV[10] == "bucket"
  local ttl = tonumber(ARGV[11])
  local function cfg(cap, i)
    return { capacity = cap, p = tonumber(ARGV[i]), a = tonumber(ARGV[i + 1]),
             tau_us = tonumber(ARGV[i + 2]), tau_rem = tonumber(ARGV[i + 3]) }
  end
  local tc, sc = cfg(tmax, 12), cfg(smax, 16)
  local key = KEYS[1]

  local raw = redis.call("GET", key)
  local st
  if raw == false then
    st = { last = 0, next_id = 0, tlog = {}, tb = { tat = 0, rem = 0 }, slog = {},
           sb = { tat = 0, rem = 0 }, holds = {} }
  else
    st = m_parse(raw)
  end

  -- sync: clamp time, sweep expired holds, prune the logs
  local n = now
  if st.last > n then n = st.last end
  n = sat(n)
  st.last = n
  local lapsed = false
  for _, h in ipairs(st.holds) do
    if h[2] <= n then lapsed = true break end
  end
  if lapsed then
    local live = {}
    for _, h in ipairs(st.holds) do
      if h[2] > n then live[#live + 1] = h end
    end
    st.holds = live
  end
  if not bucket then
    st.tlog = m_prune(st.tlog, n, period)
    st.slog = m_prune(st.slog, n, period)
  end

  local function save()
    -- Keep the state until it is idle: every unit out of the window, both
    -- buckets full, every hold expired.
    -- (Logs are in time order: their newest entry leaves last.)
    local idle = n
    local t = st.tlog[#st.tlog]
    if t ~= nil and t[1] + period > idle then idle = t[1] + period end
    t = st.slog[#st.slog]
    if t ~= nil and t[1] + period > idle then idle = t[1] + period end
    t = g_ceil(st.tb.tat, st.tb.rem)
    if t > idle then idle = t end
    t = g_ceil(st.sb.tat, st.sb.rem)
    if t > idle then idle = t end
    for _, h in ipairs(st.holds) do
      if h[2] > idle then idle = h[2] end
    end
    idle = sat(idle)
    local ms = math.max(1, math.ceil((idle - n) / 1000)) + margin
    redis.call("SET", key, cmsgpack.pack(m_flat(st)), "PX", ms)
  end

  local function with(reply)
    if with_state then
      -- A peek changes nothing: it reports the state as stored.
      if op == "peek" then
        reply[#reply + 1] = raw and m_flat(m_parse(raw)) or { 0, 0, 0, 0, 0, 0, 0, 0, 0 }
      else
        reply[#reply + 1] = m_flat(st)
      end
    end
    return reply
  end

  if op == "settle" then
    local found = 0
    for i, h in ipairs(st.holds) do
      if h[1] == id then
        table.remove(st.holds, i)
        found = 1
        break
      end
    end
    if success_outcome then
      if bucket then
        local tu, tf = g_norm(sc, st.sb.tat, st.sb.rem)
        if tu < n then tu, tf = n, 0 end
        local iu, if_ = g_inc(sc, 1)
        local nu, nf = g_add(sc, tu, tf, iu, if_)
        if nu >= MAXT then nu, nf = MAXT, 0 end
        st.sb = { tat = nu, rem = nf }
      else
        m_record(st.slog, n)
      end
    end
    save()
    return with({ n, found })
  end

  local function view(which, held, extra)
    if which == 1 then
      if bucket then return m_bucket_view(n, tc, st.tb, held, extra, 1) end
      return m_sliding_view(n, period, st.tlog, tmax, held, extra, 1)
    end
    if bucket then return m_bucket_view(n, sc, st.sb, held, extra, 2) end
    return m_sliding_view(n, period, st.slog, smax, held, extra, 2)
  end

  local held = #st.holds
  local trow, tb = {}, 0
  if tmax > 0 then trow, tb = view(1, 0, 1) end
  local srow, sb = view(2, held, 1)
  if sb == 0 and held >= M_MAX_IN_FLIGHT then
    local first = nil
    for _, h in ipairs(st.holds) do
      if first == nil or h[2] < first then first = h[2] end
    end
    local at = math.min(sat(first or 0), sat(n + M_IN_FLIGHT_RETRY))
    srow, sb = m_denied(smax, 0, srow[4], at), 3
  end
  local blocked = 0
  if tb ~= 0 and sb ~= 0 then
    if trow[5] >= srow[5] then blocked = tb else blocked = sb end
  elseif tb ~= 0 then
    blocked = tb
  else
    blocked = sb
  end
  if blocked ~= 0 then
    -- Report the counts that had room as they stand (nothing taken).
    if tmax > 0 and trow[1] == 1 then trow = view(1, 0, 0) end
    if srow[1] == 1 then srow = view(2, held, 0) end
  end
  if blocked ~= 0 or op == "peek" then
    if op ~= "peek" then save() end
    return with({ n, -1, held, blocked, trow, srow })
  end
  if tmax > 0 then
    if bucket then
      local _, next = g_decide(tc, st.tb, n, 1)
      if next then st.tb = next end
    else
      m_record(st.tlog, n)
    end
  end
  local hid = math.max(st.next_id, n)
  if hid >= SAFE then st.next_id = 0 else st.next_id = hid + 1 end
  st.holds[#st.holds + 1] = { hid, sat(n + ttl) }
  save()
  return with({ n, hid, held + 1, 0, trow, srow })
end
