-- A provider answered again: bring forward the retries of its connections in backoff, so
-- they don't sit out a backoff of minutes. Only a retry due later than now + its jitter
-- moves; a connection being refreshed (locked) stays in the set for a later pass. A
-- member whose connection is gone or no longer failing (deleted, reconnected) only leaves
-- the set: its record is never written (nor re-created).
-- Time is the Redis server's (TIME); effects replication (Redis 5+ default) allows it.
-- KEYS: 1 the provider's backoff set, 2 schedule, then per connection its hash and lock.
-- ARGV: per connection its schedule member and jitter (seconds), in the same order.
-- Returns how many retries moved.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local moved = 0
for i = 1, #ARGV, 2 do
  local hash, lock = KEYS[2 + i], KEYS[3 + i]
  local member = ARGV[i]
  if not redis.call('HGET', hash, 'consecutive_failures') then
    redis.call('ZREM', KEYS[1], member)
  elseif redis.call('EXISTS', lock) == 0 then
    local due = redis.call('HGET', hash, 'next_refresh_at')
    local at = now + tonumber(ARGV[i + 1])
    if due and tonumber(due) > at then
      local score = string.format('%.6f', at)
      redis.call('HSET', hash, 'next_refresh_at', score)
      redis.call('ZADD', KEYS[2], 'XX', score, member)
      moved = moved + 1
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return moved
