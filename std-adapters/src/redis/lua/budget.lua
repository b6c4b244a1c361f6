-- ratebound: budget windows (a port of ratebound-core's budget module).
--
-- KEYS[1]: the budget's state (a hash: m = "last,next_id,throttle_until",
--   w = one "start,used,reserved,fired" per window, k and d = per window the
--   kind and digest of the limit that last wrote it (older states have
--   none), h = holds x "id,at,expires,requests,tokens,cost,lapsed").
-- ARGV: now_us ("" = Redis TIME), ttl_margin_ms, op ("reserve" | "settle" |
--   "release" | "record" | "try_spend" | "status" | "peek" | "reset"),
--   id, requests, tokens, cost (usage already clamped and validated by the
--   caller), "1" to return the state (tests) else "0", then the config: hold_slots, hold_ttl_us, utc_offset_us,
--   throttle (0 = none, else 1), throttle_min_delay_us, limit count, then
--   per limit: dimension (1 requests, 2 tokens, 3 cost), horizon length µs
--   (0 = calendar month), max, throttle amount, threshold count, then per
--   threshold: bp, amount; then per limit its kind and digest (core's
--   `wire::budget_limit_tags`): windows are matched to limits by kind, and
--   one that records another digest is re-read first, its holds recounted
--   and its alert flags cleared (core's `Budget::reconfigure`); last, the
--   root config's limit count and its kind and digest per limit
--   (`wire::budget_root_tags`), which written windows of kind 0 take.
-- Returns { code (0 ok, 2 unknown reservation), result, alerts, state }.

local BP = 10000
local MAX_UTIL = 1000000
local USED_CAP = 4503599627370496 -- 2^52
local LIMIT_HIT = 128
local DAY = 86400000000

-- ------------------------------------------------------------ calendar

local function floor_div(a, b) -- exact floor(a / b) for |a| < 2^53, b >= 1
  local r = math.fmod(a, b)
  if r < 0 then r = r + b end
  return (a - r) / b
end

local function tdiv(a, b) -- Rust's truncating `/` on small integers
  local q = a / b
  if q >= 0 then return math.floor(q) end
  return math.ceil(q)
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era
  if y >= 0 then era = tdiv(y, 400) else era = tdiv(y - 399, 400) end
  local yoe = y - era * 400
  local mp
  if m > 2 then mp = m - 3 else mp = m + 9 end
  local doy = tdiv(153 * mp + 2, 5) + d - 1
  local doe = yoe * 365 + tdiv(yoe, 4) - tdiv(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era
  if z >= 0 then era = tdiv(z, 146097) else era = tdiv(z - 146096, 146097) end
  local doe = z - era * 146097
  local yoe = tdiv(doe - tdiv(doe, 1460) + tdiv(doe, 36524) - tdiv(doe, 146096), 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + tdiv(yoe, 4) - tdiv(yoe, 100))
  local mp = tdiv(5 * doy + 2, 153)
  local m
  if mp < 10 then m = mp + 3 else m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m
end

-- `[start, end)` of limit `l`'s window containing `at`, windows aligned at
-- `offset` µs from UTC.
local function bounds(l, at, offset)
  -- One call asks for the same window several times; `l` is a cached
  -- config table, and the window a pure function of `at` and it.
  if l.memo_at == at and l.memo_offset == offset then return l.memo_s, l.memo_e end
  local loc = at + offset
  local s, e
  if l.len > 0 then
    s = floor_div(loc, l.len) * l.len
    e = s + l.len
  else
    local days = floor_div(loc, DAY)
    local y, m = civil_from_days(days)
    local ny, nm = y, m + 1
    if m == 12 then ny, nm = y + 1, 1 end
    s = days_from_civil(y, m, 1) * DAY
    e = days_from_civil(ny, nm, 1) * DAY
  end
  s, e = math.max(0, s - offset), math.max(0, e - offset)
  l.memo_at, l.memo_offset, l.memo_s, l.memo_e = at, offset, s, e
  return s, e
end

-- A stored list must be digits and commas only: anything else (a sign, a
-- fraction, text) is a corrupt state, never read as a smaller number.
local function check_list(s)
  if s and string.find(s, "[^%d,]") then
    error("ratebound: corrupt state field " .. s)
  end
  return s
end

-- A stored integer (digits only, by check_list) within 2^53; anything
-- else is a corrupt state.
local function stored(v)
  local n = tonumber(v)
  if n == nil or n > SAFE then error("ratebound: corrupt state field " .. v) end
  return n
end

local function utilization_bp(used, max)
  return math.min(mul_div_floor(used, BP, max), MAX_UTIL)
end

local function bit_set(v, b) return math.fmod(math.floor(v / b), 2) == 1 end

-- A window that was never used (state_out pads to core's twelve).
local UNUSED = { start = 0, used = 0, reserved = 0, fired = 0, kind = 0, limit = 0 }

-- A budget's config, parsed once per distinct config (the arguments after
-- the usage); the cache is cleared when it holds 256 of them.
local config_cache, config_cached = {}, 0
local function budget_config(ARGV)
  local k = table.concat(ARGV, ",", 9)
  local c = config_cache[k]
  if c then return c end
  c = { slots = tonumber(ARGV[9]), hold_ttl = tonumber(ARGV[10]), offset = tonumber(ARGV[11]),
        throttle = tonumber(ARGV[12]) == 1, min_delay = tonumber(ARGV[13]), limits = {} }
  local i = 15
  for n = 1, tonumber(ARGV[14]) do
    local l = { dim = tonumber(ARGV[i]), len = tonumber(ARGV[i + 1]), max = tonumber(ARGV[i + 2]),
                throttle_amount = tonumber(ARGV[i + 3]), thresholds = {} }
    local nt = tonumber(ARGV[i + 4])
    i = i + 5
    for t = 1, nt do
      l.thresholds[t] = { bp = tonumber(ARGV[i]), amount = tonumber(ARGV[i + 1]) }
      i = i + 2
    end
    c.limits[n] = l
  end
  for n = 1, #c.limits do
    c.limits[n].kind, c.limits[n].digest = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    i = i + 2
  end
  c.root = {}
  for n = 1, tonumber(ARGV[i]) do
    c.root[n] = { kind = tonumber(ARGV[i + 2 * n - 1]), digest = tonumber(ARGV[i + 2 * n]) }
  end
  if config_cached >= 256 then config_cache, config_cached = {}, 0 end
  config_cache[k] = c
  config_cached = config_cached + 1
  return c
end

-- The entry point. Its helpers close over this call's state, so they are
-- defined per call; the prelude's are defined once per library load.
local function budget(KEYS, ARGV)
  local now_arg = ARGV[1]
  local margin = tonumber(ARGV[2])
  local op = ARGV[3]
  local id_arg = tonumber(ARGV[4])
  local usage = { tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]) }
  local want_state = ARGV[8] == "1"
  local cfg = budget_config(ARGV)
  local slots, hold_ttl, offset, throttle, min_delay, limits =
    cfg.slots, cfg.hold_ttl, cfg.offset, cfg.throttle, cfg.min_delay, cfg.limits
  local nlimits = #limits

  -- --------------------------------------------------------------- state

  local key = KEYS[1]
  local raw = redis.call("HMGET", key, "m", "w", "h", "d", "k")

  -- One pattern match per record (meta, window, hold) rather than per number.
  local st = { last = 0, next_id = 0, throttle_until = 0, windows = {}, holds = {} }
  local last, next_id, throttle_until = string.match(check_list(raw[1]) or "", "^(%d+),(%d+),(%d+)$")
  if last then
    st.last, st.next_id, st.throttle_until = stored(last), stored(next_id), stored(throttle_until)
  end
  -- The windows stored: the configured limits' and any beyond them (a
  -- limit another config has, kept for it as core keeps all twelve).
  -- Digits only (check_list), so each field is a non-negative integer;
  -- only its size needs a look.
  local n = 0
  for a, b, c, d in string.gmatch(check_list(raw[2]) or "", "(%d+),(%d+),(%d+),(%d+)") do
    if n == 12 then break end
    n = n + 1
    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    if a > SAFE or b > SAFE or c > SAFE or d > SAFE then error("ratebound: corrupt state field in window " .. n) end
    st.windows[n] = { start = a, used = b, reserved = c, fired = d, kind = 0, limit = 0 }
  end
  for k = n + 1, nlimits do st.windows[k] = { start = 0, used = 0, reserved = 0, fired = 0, kind = 0, limit = 0 } end
  n = 0
  for x in string.gmatch(check_list(raw[4]) or "", "%d+") do
    n = n + 1
    if st.windows[n] == nil then break end
    st.windows[n].limit = stored(x)
  end
  n = 0
  for x in string.gmatch(check_list(raw[5]) or "", "%d+") do
    n = n + 1
    if st.windows[n] == nil then break end
    st.windows[n].kind = stored(x)
  end
  for id, at, expires, r, t, c, lapsed in
    string.gmatch(check_list(raw[3]) or "", "(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+)") do
    id, at, expires, r, t, c = tonumber(id), tonumber(at), tonumber(expires), tonumber(r), tonumber(t), tonumber(c)
    if id > SAFE or at > SAFE or expires > SAFE or r > SAFE or t > SAFE or c > SAFE then
      error("ratebound: corrupt state field in a hold")
    end
    st.holds[#st.holds + 1] = { id = id, at = at, expires = expires, u = { r, t, c }, lapsed = lapsed == "1" }
  end

  local function encode()
    local wv = {}
    for n = 1, #st.windows do
      local x = st.windows[n]
      wv[#wv + 1] = string.format("%d,%d,%d,%d", x.start, x.used, x.reserved, x.fired)
    end
    local hv = {}
    for _, x in ipairs(st.holds) do
      local lapsed = 0
      if x.lapsed then lapsed = 1 end
      hv[#hv + 1] = string.format("%d,%d,%d,%d,%d,%d,%d", x.id, x.at, x.expires, x.u[1], x.u[2], x.u[3], lapsed)
    end
    local dv = {}
    local kv = {}
    for n = 1, #st.windows do
      dv[n] = string.format("%d", st.windows[n].limit)
      kv[n] = string.format("%d", st.windows[n].kind)
    end
    return string.format("%d,%d,%d", st.last, st.next_id, st.throttle_until), table.concat(wv, ","),
      table.concat(hv, ","), table.concat(dv, ","), table.concat(kv, ",")
  end

  -- The whole state in core's fields (twelve windows), only when asked.
  local function state_out()
    if not want_state then return {} end
    local out = { st.last, st.next_id, st.throttle_until }
    for n = 1, 12 do
      local x = st.windows[n] or UNUSED
      out[#out + 1] = x.start; out[#out + 1] = x.used; out[#out + 1] = x.reserved; out[#out + 1] = x.fired
      out[#out + 1] = x.kind; out[#out + 1] = x.limit
    end
    for _, x in ipairs(st.holds) do
      out[#out + 1] = x.id; out[#out + 1] = x.at; out[#out + 1] = x.expires
      out[#out + 1] = x.u[1]; out[#out + 1] = x.u[2]; out[#out + 1] = x.u[3]
      if x.lapsed then out[#out + 1] = 1 else out[#out + 1] = 0 end
    end
    return out
  end

  -- ------------------------------------------------------------ budget ops

  local function unhold(x)
    for n, l in ipairs(limits) do
      local win = st.windows[n]
      win.reserved = math.max(0, win.reserved - x.u[l.dim])
    end
  end

  -- What the live holds hold in dimension `dim` (capped at 2^52).
  local function held(dim)
    local sum = 0
    for _, x in ipairs(st.holds) do
      if not x.lapsed then sum = sum + x.u[dim] end
    end
    return math.min(sum, USED_CAP)
  end

  -- The end of a window by its recorded kind (its start's window).
  local function window_end(w)
    local _, e = bounds({ len = math.fmod(w.kind, 1125899906842624) }, w.start, offset)
    return e
  end

  -- Each limit's window at the limit's position, matched by kind (one of
  -- kind 0 is empty — the limit at its position — or from before windows
  -- recorded their limits: the root config's limit at its position); a
  -- limit with none gets an empty window; the windows (not ended) no
  -- limit takes (and some limit wrote) follow. (One not kept up to date
  -- meanwhile has no digest: sync re-reads it.)
  local function lay_out(now)
    for n, win in ipairs(st.windows) do
      if win.kind == 0 then
        if win.start ~= 0 or win.used ~= 0 then
          local r = cfg.root[n]
          if r then win.kind, win.limit = r.kind, r.digest else win.limit = 0 end
        elseif n <= nlimits then
          win.kind = limits[n].kind
        end
      end
    end
    local all = true
    for n, l in ipairs(limits) do
      if st.windows[n].kind ~= l.kind then all = false end
    end
    if all then return end
    local old, taken, laid = st.windows, {}, {}
    for n, l in ipairs(limits) do
      local found = nil
      for j = 1, #old do
        if not taken[j] and old[j].kind == l.kind then found = j; break end
      end
      local w
      if found then
        taken[found] = true
        local o = old[found]
        w = { start = o.start, used = o.used, reserved = o.reserved, fired = o.fired, kind = o.kind, limit = o.limit }
      else
        w = { start = 0, used = 0, reserved = 0, fired = 0, kind = l.kind, limit = 0 }
      end
      laid[n] = w
    end
    for j = 1, #old do
      local o = old[j]
      if #laid < 12 and not taken[j] and o.kind ~= 0 and (o.start ~= 0 or o.used ~= 0)
          and window_end(o) > now then
        laid[#laid + 1] = o
      end
    end
    st.windows = laid
  end

  local function sync(now)
    now = math.max(now, st.last)
    st.last = now
    lay_out(now)
    -- Windows of limits this config lacks are not kept up to date from
    -- here on: re-read when a config has their limit again.
    for n = nlimits + 1, #st.windows do st.windows[n].limit = 0 end
    for n, l in ipairs(limits) do
      local start = bounds(l, now, offset)
      local win = st.windows[n]
      if win.start ~= start then
        st.windows[n] = { start = start, used = 0, reserved = win.reserved, fired = 0, kind = win.kind, limit = win.limit }
      end
    end
    for _, x in ipairs(st.holds) do
      if not x.lapsed and x.expires <= now then
        x.lapsed = true
        unhold(x)
      end
    end
    for n, l in ipairs(limits) do
      local win = st.windows[n]
      if win.limit ~= l.digest then
        -- Written under another max or thresholds (or none: a limit added
        -- since): it holds what the live holds hold, and its alert flags
        -- start again under this config.
        win.reserved = held(l.dim)
        win.fired = 0
        win.limit = l.digest
      end
    end
    return now
  end

  local alerts = {}
  local function alert(kind, n, l, win, bp, now)
    alerts[#alerts + 1] = { kind, n - 1, bp, utilization_bp(win.used, l.max), now, win.start }
  end

  local function charge(now, u)
    for n, l in ipairs(limits) do
      local amt = u[l.dim]
      if amt > 0 then
        local win = st.windows[n]
        win.used = math.min(win.used + amt, USED_CAP)
        for j = #l.thresholds, 1, -1 do
          local t = l.thresholds[j]
          if win.used >= t.amount and not bit_set(win.fired, 2 ^ (j - 1)) then
            -- Firing threshold j marks it and every lower one.
            local low = math.fmod(win.fired, 2 ^ j)
            win.fired = win.fired - low + (2 ^ j - 1)
            alert(0, n, l, win, t.bp, now)
            break
          end
        end
        if win.used >= l.max and not bit_set(win.fired, LIMIT_HIT) then
          win.fired = win.fired + LIMIT_HIT
          alert(1, n, l, win, BP, now)
        end
      end
    end
  end

  local function fit_time(l, win, amt, now)
    local start, e = bounds(l, now, offset)
    local used_now = 0
    if win.start == start then used_now = win.used end
    local freed_now = 0
    for _, x in ipairs(st.holds) do
      local a = x.u[l.dim]
      if not x.lapsed and a > 0 and x.expires <= now then freed_now = freed_now + a end
    end
    -- The common case, it fits now: no closure, no tables.
    if used_now + math.max(0, win.reserved - freed_now) + amt <= l.max then return now end
    local function fits(t, freed)
      local used = used_now
      if t >= e then used = 0 end
      return used + math.max(0, win.reserved - freed) + amt <= l.max
    end
    local later = {}
    for _, x in ipairs(st.holds) do
      local a = x.u[l.dim]
      if not x.lapsed and a > 0 and x.expires > now then later[#later + 1] = { x.expires, a } end
    end
    table.sort(later, function(p, q) return p[1] < q[1] or (p[1] == q[1] and p[2] < q[2]) end)
    local freed, end_checked, k = freed_now, false, 1
    while later[k] do
      local t = later[k][1]
      if not end_checked and e < t then
        if fits(e, freed) then return e end
        end_checked = true
      end
      while later[k] and later[k][1] == t do
        freed = freed + later[k][2]
        k = k + 1
      end
      if fits(t, freed) then return t end
    end
    local last = 0
    if #later > 0 then last = later[#later][1] end
    return math.max(e, last)
  end

  -- denial = { reason (0 limit, 1 throttled, 2 too many reservations), retry_at, limit or -1 }
  local function evaluate(now, u)
    local denial, mask = nil, {}
    for n, l in ipairs(limits) do
      local amt = u[l.dim]
      if amt > 0 then
        local t = fit_time(l, st.windows[n], amt, now)
        if t > now then
          mask[n] = true
          if denial == nil or t > denial[2] then denial = { 0, t, n - 1 } end
        end
      end
    end
    local empty = u[1] == 0 and u[2] == 0 and u[3] == 0
    if not empty and now < st.throttle_until then
      if denial then
        denial[2] = math.max(denial[2], st.throttle_until)
      else
        denial = { 1, st.throttle_until, -1 }
      end
    end
    return denial, mask
  end

  local function admit(now, u)
    local denial, mask = evaluate(now, u)
    for n, l in ipairs(limits) do
      local win = st.windows[n]
      if mask[n] and not bit_set(win.fired, LIMIT_HIT) then
        win.fired = win.fired + LIMIT_HIT
        alert(1, n, l, win, BP, now)
      end
    end
    return denial
  end

  local function pace(now, u)
    if not throttle then return end
    local delay, pacing = 0, false
    for n, l in ipairs(limits) do
      local amt = u[l.dim]
      local win = st.windows[n]
      local committed = win.used + win.reserved
      if amt > 0 and committed >= l.throttle_amount then
        pacing = true
        local left_before = math.max(0, l.max - committed) + amt
        local _, e = bounds(l, now, offset)
        local rest = math.max(0, e - now)
        delay = math.max(delay, mul_div_ceil(rest, amt, math.max(left_before, 1)))
      end
    end
    if pacing then st.throttle_until = sat(now + math.max(delay, min_delay)) end
  end

  local function save()
    local mm, ww, hh, dd, kk = encode()
    redis.call("HSET", key, "m", mm, "w", ww, "h", hh, "d", dd, "k", kk)
    -- Everything is back to nothing once every window has ended and every
    -- hold lapsed; until then the state must live.
    local until_ = st.throttle_until
    for n, l in ipairs(limits) do
      local _, e = bounds(l, st.last, offset)
      until_ = math.max(until_, e)
    end
    -- A lapsed hold may still be settled late (core charges it): keep the
    -- state one more hold TTL past every hold's expiry.
    -- A window kept for a limit this config lacks lives until it ends (its
    -- limit may come back).
    for n = nlimits + 1, #st.windows do
      local w = st.windows[n]
      if w.kind ~= 0 and w.start ~= 0 then until_ = math.max(until_, window_end(w)) end
    end
    for _, x in ipairs(st.holds) do until_ = math.max(until_, sat(x.expires + hold_ttl)) end
    redis.call("PEXPIRE", key, int_str(math.max(1, math.ceil(math.max(0, until_ - st.last) / 1000)) + margin))
  end

  local now = now_us(now_arg)
  if now == nil then return late_reply() end
  local result = {}

  if op == "peek" then
    local before = state_out() -- peek changes nothing: report the stored state
    local n0 = math.max(now, st.last)
    -- Written under another config: read as the next operation will
    -- (on the loaded copy; nothing is saved).
    local stale = false
    for n, l in ipairs(limits) do
      local win = st.windows[n]
      if win.limit ~= l.digest or (win.kind ~= 0 and win.kind ~= l.kind) then stale = true end
    end
    if stale then n0 = sync(now) end
    local d = evaluate(n0, usage)
    if d then result = { 1, d[1], d[2], d[3] } else result = { 0 } end
    return { 0, result, {}, before }
  elseif op == "status" then
    local before = state_out() -- status changes nothing: report the stored state
    now = sync(now) -- on the loaded copy; nothing is saved
    local live = 0
    for _, x in ipairs(st.holds) do if not x.lapsed then live = live + 1 end end
    local throttled = 0
    if now < st.throttle_until then throttled = 1 end
    result = { throttled, st.throttle_until, live }
    for n, l in ipairs(limits) do
      local win = st.windows[n]
      local s, e = bounds(l, now, offset)
      result[#result + 1] = win.used; result[#result + 1] = win.reserved
      result[#result + 1] = utilization_bp(win.used, l.max)
      result[#result + 1] = s; result[#result + 1] = e
    end
    return { 0, result, {}, before }
  elseif op == "reset" then
    local last, next_id = st.last, st.next_id
    st = { last = last, next_id = next_id, throttle_until = 0, windows = {}, holds = {} }
    for n = 1, nlimits do st.windows[n] = { start = 0, used = 0, reserved = 0, fired = 0, kind = 0, limit = 0 } end
    save()
    return { 0, {}, {}, state_out() }
  end

  now = sync(now)

  local function take_hold(id)
    for k, x in ipairs(st.holds) do
      if x.id == id then
        table.remove(st.holds, k)
        if not x.lapsed then unhold(x) end
        return x
      end
    end
    return nil
  end

  if op == "reserve" then
    local d = admit(now, usage)
    if d then
      save()
      return { 0, { 0, d[1], d[2], d[3] }, alerts, state_out() }
    end
    if #st.holds >= slots then
      local freed = false
      for k, x in ipairs(st.holds) do
        if x.lapsed then
          table.remove(st.holds, k)
          freed = true
          break
        end
      end
      if not freed then
        local retry = nil
        for _, x in ipairs(st.holds) do
          if retry == nil or x.expires < retry then retry = x.expires end
        end
        save()
        return { 0, { 0, 2, retry or now, -1 }, alerts, state_out() }
      end
    end
    local id = math.max(st.next_id, now)
    st.next_id = math.min(id + 1, SAFE)
    local expires = sat(now + hold_ttl)
    st.holds[#st.holds + 1] = { id = id, at = now, expires = expires, u = { usage[1], usage[2], usage[3] }, lapsed = false }
    for n, l in ipairs(limits) do
      local win = st.windows[n]
      win.reserved = win.reserved + usage[l.dim]
    end
    pace(now, usage)
    save()
    return { 0, { 1, id, expires }, alerts, state_out() }
  elseif op == "settle" or op == "release" then
    local x = take_hold(id_arg)
    if x == nil then
      save() -- sync's window rolls and lapses are kept, as core keeps them
      return { 2, {}, {}, state_out() }
    end
    local late = 0
    if x.lapsed then late = 1 end
    if op == "settle" then charge(now, usage) end
    save()
    return { 0, { late }, alerts, state_out() }
  elseif op == "record" then
    charge(now, usage)
    save()
    return { 0, {}, alerts, state_out() }
  elseif op == "try_spend" then
    local d = admit(now, usage)
    if d then
      save()
      return { 0, { 1, d[1], d[2], d[3] }, alerts, state_out() }
    end
    charge(now, usage)
    pace(now, usage)
    save()
    return { 0, { 0 }, alerts, state_out() }
  end
  return redis.error_reply("ERR ratebound: unknown budget op " .. tostring(op))
end
