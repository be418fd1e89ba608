-- Take a connection for a refresh: its lock and its fields. When it has a refresh token, the
-- caller needs one of its provider's concurrency slots, taken by take_slot.lua in the same
-- round trip (a pipeline: the slots are one key for the fleet, in a slot of their own).
-- The lock lives half the time the access token has left, and at most half the
-- provider's reuse grace, within [min, max]: a crashed holder's connection is free again
-- before its token lapses and while the old refresh token still works at the provider,
-- and never sooner than one token request can take (a second refresh with a rotating
-- token in flight would be reuse). When a refresh goes ahead, the connection's place on
-- the schedule comes as close, so it comes due again then if this refresh never ends.
-- Time is the Redis server's (TIME); scripts that call TIME before writing need effects
-- replication, the default since Redis 5.
-- A scheduled refresh also asks the provider host's breaker (core/provider_breaker.py), as
-- this shard sees it (its gate, adapters/provider_breakers.py): while it is open, the
-- refresh is held (off for a pause, into the host's held set) unless
-- the next probe is due, and then it is the probe. One held refresh per probe interval is
-- booked for the next probe time (by the probe, or by the first hold after it), so probing
-- goes on when nothing else comes due.
-- KEYS (one shard's): 1 lock, 2 connection hash, 3 schedule, and for a scheduled claim
-- 4 the host's breaker gate, 5 the host's held set.
-- ARGV: 1 lock token, 2 longest lock ms, 3 shortest lock ms, 4 schedule member, 5 the
-- provider's reuse grace in seconds ('' when none is documented), 6 the breaker's clock
-- ('' for a refresh someone asks for now: never held), 7 probe interval seconds, 8 this
-- hold's pause seconds, 9 the held set's TTL.
-- Returns {'locked'}, {'gone'}, {'held', fields, 'locked' | ''} or
-- {'ok', fields, 'slot' | 'noslot', 'probe' | '', lock ms, score before}: 'slot' when it
-- needs one; the schedule score it had before this claim moved it closer ('' if none), for
-- a claim that gets no slot to put back.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ttl = tonumber(ARGV[2])
-- A value that isn't a number (a damaged record) bounds nothing here: the caller's parse
-- names the record corrupt and gives the lock back.
local expires_at = tonumber(redis.call('HGET', KEYS[2], 'expires_at') or '')
if expires_at then
  ttl = math.min(ttl, (expires_at - now) * 500)
end
if ARGV[5] ~= '' and tonumber(ARGV[5]) > 0 then
  ttl = math.min(ttl, tonumber(ARGV[5]) * 500)
end
ttl = math.floor(math.max(tonumber(ARGV[3]), ttl))
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then
  return {'locked'}
end
local fields = redis.call('HGETALL', KEYS[2])
if #fields == 0 then
  redis.call('DEL', KEYS[1])
  return {'gone'}
end
if redis.call('HEXISTS', KEYS[2], 'refresh_token') == 0 then
  return {'ok', fields, 'noslot', '', ttl}
end
local probe = ''
if ARGV[6] ~= '' and KEYS[4] and redis.call('HGET', KEYS[4], 'state') == 'open' then
  local at = tonumber(ARGV[6])
  local probe_at = tonumber(redis.call('HGET', KEYS[4], 'probe_at') or '0')
  if at >= probe_at then
    -- Paced by the probe times, not by when a probe got here (a beat tick and a queue
    -- later): a probe every interval, unless one came more than an interval late.
    local next_probe = probe_at + tonumber(ARGV[7])
    if next_probe <= at then
      next_probe = at + tonumber(ARGV[7])
    end
    redis.call('HSET', KEYS[4], 'probe_at', string.format('%.6f', next_probe))
    probe = 'probe'
    redis.call('ZREM', KEYS[5], ARGV[4])
    -- Book the next probe now: should this one fail, its own backoff must not set the pace.
    -- A held member no longer on the schedule (deleted, reconnected) leaves the set.
    for _ = 1, 5 do
      local booked = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
      if not booked then break end
      if redis.call('ZADD', KEYS[3], 'XX', 'CH', string.format('%.6f', next_probe + 0.5),
          booked) == 1 or redis.call('ZSCORE', KEYS[3], booked) then
        redis.call('HSET', KEYS[4], 'booked_at', string.format('%.6f', next_probe))
        break
      end
      redis.call('ZREM', KEYS[5], booked)
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
    if tonumber(redis.call('HGET', KEYS[4], 'booked_at') or '0') < probe_at then
      -- Half a second late: a worker whose clock is a little behind still finds it due.
      back = probe_at + 0.5
      redis.call('HSET', KEYS[4], 'booked_at', string.format('%.6f', probe_at))
    else
      back = at + tonumber(ARGV[8])
      -- Back when its token lapses, so its status says why it has none.
      if expires_at and expires_at > at and expires_at + 1 < back then
        back = expires_at + 1
      end
    end
    redis.call('ZADD', KEYS[3], 'XX', string.format('%.6f', back), ARGV[4])
    redis.call('ZADD', KEYS[5], string.format('%.6f', expires_at or back), ARGV[4])
    redis.call('EXPIRE', KEYS[5], ARGV[9])
    return {'held', fields, lapsed and 'locked' or ''}
  end
end
local before = redis.call('ZSCORE', KEYS[3], ARGV[4]) or ''
redis.call('ZADD', KEYS[3], 'XX', 'LT', string.format('%.6f', now + ttl / 1000), ARGV[4])
return {'ok', fields, 'slot', probe, ttl, before}
