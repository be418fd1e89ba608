-- Take a connection for a refresh: its lock, its fields and, when it has a refresh token,
-- one of its provider's concurrency slots. One round trip on the hot path.
-- The lock lives half the time the access token has left, and at most half the
-- provider's reuse grace, within [min, max]: a crashed holder's connection is free again
-- before its token lapses and while the old refresh token still works at the provider,
-- and never sooner than one token request can take (a second refresh with a rotating
-- token in flight would be reuse). When a refresh goes ahead, the connection's place on
-- the schedule comes as close, so it comes due again then if this refresh never ends.
-- Time is the Redis server's (TIME); scripts that call TIME before writing need effects
-- replication, the default since Redis 5.
-- A scheduled refresh also asks the provider host's breaker (core/provider_breaker.py):
-- while it is open, the refresh is held (off for a pause, into the host's held set) unless
-- the next probe is due, and then it is the probe. One held refresh per probe interval is
-- booked for the next probe time (by the probe, or by the first hold after it), so probing
-- goes on when nothing else comes due.
-- KEYS: 1 lock, 2 provider slots, 3 connection hash, 4 schedule, 5 the host's breaker,
-- 6 the host's held set.
-- ARGV: 1 lock token, 2 longest lock ms, 3 shortest lock ms, 4 longest slot TTL seconds,
-- 5 slot limit, 6 slot token, 7 schedule member, 8 the provider's reuse grace in seconds
-- ('' when none is documented), 9 the breaker's clock ('' for a refresh someone asks for
-- now: never held), 10 probe interval seconds, 11 this hold's pause seconds, 12 the held
-- set's TTL.
-- Returns {'locked'}, {'gone'}, {'throttled'}, {'held', fields, 'locked' | ''} or
-- {'ok', fields, 'slot' | 'noslot', 'probe' | ''}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ttl = tonumber(ARGV[2])
-- A value that isn't a number (a damaged record) bounds nothing here: the caller's parse
-- names the record corrupt and gives the lock back.
local expires_at = tonumber(redis.call('HGET', KEYS[3], 'expires_at') or '')
if expires_at then
  ttl = math.min(ttl, (expires_at - now) * 500)
end
if ARGV[8] ~= '' and tonumber(ARGV[8]) > 0 then
  ttl = math.min(ttl, tonumber(ARGV[8]) * 500)
end
ttl = math.floor(math.max(tonumber(ARGV[3]), ttl))
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then
  return {'locked'}
end
local fields = redis.call('HGETALL', KEYS[3])
if #fields == 0 then
  redis.call('DEL', KEYS[1])
  return {'gone'}
end
if redis.call('HEXISTS', KEYS[3], 'refresh_token') == 0 then
  return {'ok', fields, 'noslot', ''}
end
local probe = ''
if ARGV[9] ~= '' and redis.call('HGET', KEYS[5], 'state') == 'open' then
  local at = tonumber(ARGV[9])
  local probe_at = tonumber(redis.call('HGET', KEYS[5], 'probe_at') or '0')
  if at >= probe_at then
    -- Paced by the probe times, not by when a probe got here (a beat tick and a queue
    -- later): a probe every interval, unless one came more than an interval late.
    local next_probe = probe_at + tonumber(ARGV[10])
    if next_probe <= at then
      next_probe = at + tonumber(ARGV[10])
    end
    redis.call('HSET', KEYS[5], 'probe_at', string.format('%.6f', next_probe))
    probe = 'probe'
    redis.call('ZREM', KEYS[6], ARGV[7])
    -- Book the next probe now: should this one fail, its own backoff must not set the pace.
    -- A held member no longer on the schedule (deleted, reconnected) leaves the set.
    for _ = 1, 5 do
      local booked = redis.call('ZRANGE', KEYS[6], 0, 0)[1]
      if not booked then break end
      if redis.call('ZADD', KEYS[4], 'XX', 'CH', string.format('%.6f', next_probe + 0.5),
          booked) == 1 or redis.call('ZSCORE', KEYS[4], booked) then
        redis.call('HSET', KEYS[5], 'booked_at', string.format('%.6f', next_probe))
        break
      end
      redis.call('ZREM', KEYS[6], booked)
    end
  else
    -- A lapsed token's status is written by the caller (degraded, provider_degraded): it
    -- keeps the lock for that write, so no refresh asked for meanwhile saves on a version
    -- the write then moves (its rotated token would be lost). Else nothing is held.
    local lapsed = expires_at and expires_at <= at
    if not lapsed then
      redis.call('DEL', KEYS[1])
    end
    local back
    if tonumber(redis.call('HGET', KEYS[5], 'booked_at') or '0') < probe_at then
      -- Half a second late: a worker whose clock is a little behind still finds it due.
      back = probe_at + 0.5
      redis.call('HSET', KEYS[5], 'booked_at', string.format('%.6f', probe_at))
    else
      back = at + tonumber(ARGV[11])
      -- Back when its token lapses, so its status says why it has none.
      if expires_at and expires_at > at and expires_at + 1 < back then
        back = expires_at + 1
      end
    end
    redis.call('ZADD', KEYS[4], 'XX', string.format('%.6f', back), ARGV[7])
    redis.call('ZADD', KEYS[6], string.format('%.6f', expires_at or back), ARGV[7])
    redis.call('EXPIRE', KEYS[6], ARGV[12])
    return {'held', fields, lapsed and 'locked' or ''}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.6f', now))
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
  return {'throttled'}
end
-- The slot lives no longer than the lock: a claim whose caller went away before the
-- reply came (an on-demand wait bound firing) holds neither for long.
local slot_ttl = math.min(tonumber(ARGV[4]), ttl / 1000)
redis.call('ZADD', KEYS[2], string.format('%.6f', now + slot_ttl), ARGV[6])
redis.call('ZADD', KEYS[4], 'XX', 'LT', string.format('%.6f', now + ttl / 1000), ARGV[7])
return {'ok', fields, 'slot', probe}
