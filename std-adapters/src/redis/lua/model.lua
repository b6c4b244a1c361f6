-- ratebound: model-level total/success counts (ratebound-std's model_limit).
--
-- KEYS: total bucket, success bucket, holds (sorted set: id -> expiry µs),
--   all under one hash tag.
-- ARGV: now_us ("" = Redis TIME), ttl_margin_ms, op ("admit" | "settle" |
--   "peek"), hold id, hold_ttl_us, outcome ("success" | "failure"),
--   total config (capacity p a tau_us tau_rem; capacity 0 = unlimited),
--   success config (capacity p a tau_us tau_rem).
-- A request is admitted when the total bucket has a token and the success
-- bucket has one for it and for every unexpired hold (request in flight).
-- Admission takes the total token and records a hold; settling removes the
-- hold and, on success, takes the success token. Nothing is ever given back.
-- Returns { now, admitted (1/0), total row or {}, success row }, rows as
-- { status, remaining, limit, reset_at, retry_at }.

-- The entry point (helpers close over this call's keys and config).
local function model(KEYS, ARGV)
  local now = now_us(ARGV[1])
  local margin = tonumber(ARGV[2])
  local op = ARGV[3]
  local id = ARGV[4]
  local hold_ttl = tonumber(ARGV[5])
  local outcome = ARGV[6]
  local function cfg(i)
    return { capacity = tonumber(ARGV[i]), p = tonumber(ARGV[i + 1]), a = tonumber(ARGV[i + 2]),
             tau_us = tonumber(ARGV[i + 3]), tau_rem = tonumber(ARGV[i + 4]) }
  end
  local tc, sc = cfg(7), cfg(12)
  local tkey, skey, hkey = KEYS[1], KEYS[2], KEYS[3]

  local function load(key)
    local kind, h = load_state(key)
    if kind ~= nil and kind ~= "g" then
      error("ratebound: key " .. key .. " holds another kind of limiter (" .. tostring(kind) .. ")")
    end
    return { tat = int_field(h[1], 0), rem = int_field(h[2], 0) }
  end

  local function store(key, st, reset)
    local ttl = math.max(1, math.ceil(math.max(0, reset - now) / 1000)) + margin
    store_gcra(key, st.tat, st.rem, ttl)
  end

  redis.call("ZREMRANGEBYSCORE", hkey, "-inf", int_str(now)) -- lapsed holds
  local inflight = redis.call("ZCARD", hkey)

  -- The success bucket as a new request sees it: every hold plus `extra`.
  local function success_view(st, extra)
    local want = inflight + extra
    if want <= sc.capacity then
      local d = g_decide(sc, st, now, want)
      return d
    end
    local d = g_decide(sc, st, now, sc.capacity)
    local q, r = divmod(sc.p, sc.a) -- one token's refill time, rounded up
    local interval = q
    if r > 0 then interval = q + 1 end
    local later = sat(now + interval)
    return { 0, 0, sc.capacity, math.max(d[4], later), math.max(d[5], later) }
  end

  if op == "settle" then
    local removed = redis.call("ZREM", hkey, id)
    if outcome == "success" then
      local st = load(skey)
      local d, next = g_decide(sc, st, now, 1)
      if next then store(skey, next, d[4]) end
    end
    return { now, removed }
  end

  local sst = load(skey)
  local tst = nil
  local trow = {}
  local tnext = nil
  if tc.capacity > 0 then
    tst = load(tkey)
    local d
    d, tnext = g_decide(tc, tst, now, 1)
    trow = d
  end
  local srow = success_view(sst, 1)
  local admitted = srow[1] == 1 and (tc.capacity == 0 or trow[1] == 1)
  if not admitted then
    -- Report the counts as they stand (nothing taken).
    if tc.capacity > 0 and trow[1] == 1 then trow = g_decide(tc, tst, now, 0) end
    if srow[1] == 1 then srow = success_view(sst, 0) end
    return { now, 0, trow, srow }
  end
  if op == "peek" then return { now, 1, trow, srow } end
  if tnext then store(tkey, tnext, trow[4]) end
  local expires = sat(now + hold_ttl)
  redis.call("ZADD", hkey, int_str(expires), id)
  -- Never shorten: another replica may hold longer leases.
  redis.call("PEXPIRE", hkey, int_str(math.max(redis.call("PTTL", hkey), math.ceil(hold_ttl / 1000) + margin)))
  -- The success bucket is not written until a success settles; keep its
  -- state alive as long as the hold can be.
  local sttl = redis.call("PTTL", skey) -- -2: no such key
  local keep = math.ceil(hold_ttl / 1000) + margin
  if sttl ~= -2 and sttl < keep then redis.call("PEXPIRE", skey, int_str(keep)) end
  return { now, 1, trow, srow }
end
