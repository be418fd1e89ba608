-- A provider answered again: bring forward the retries of its connections in backoff, so
-- they don't sit out a backoff of minutes. Only a retry due later than now + its jitter
-- moves; a connection being refreshed (locked) stays in the set for a later pass. A
-- member whose connection is gone or no longer failing (deleted, reconnected) only leaves
-- the set: its record is never written (nor re-created).
-- Only a retry whose connection last failed at least ARGV[1] seconds ago moves: one
-- connection failing for a reason of its own is not retried at the pace of its provider's
-- successes. Never earlier than the provider's Retry-After (`retry_not_before`). The
-- failure's time is `last_failed_at` (written only by a failed refresh), not `updated_at`,
-- which any later write (a rotation-conflict mark) resets; a record written before that
-- field existed falls back to `updated_at`.
-- Time is the Redis server's (TIME); effects replication (Redis 5+ default) allows it.
-- KEYS: 1 the provider's backoff set, 2 schedule, then per connection its hash and lock.
-- ARGV: 1 the least wait since the last failure (seconds), then per connection its
-- schedule member and jitter (seconds), in the same order.
-- Returns how many retries moved.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local least_wait = tonumber(ARGV[1])
local moved = 0
for i = 2, #ARGV, 2 do
  local hash, lock = KEYS[1 + i], KEYS[2 + i]
  local member = ARGV[i]
  local failure = redis.call('HMGET', hash, 'consecutive_failures', 'last_failed_at',
    'retry_not_before', 'next_refresh_at', 'updated_at')
  if not failure[1] then
    redis.call('ZREM', KEYS[1], member)
  elseif now - tonumber(failure[2] or failure[5] or '0') >= least_wait
      and redis.call('EXISTS', lock) == 0 then
    local due = failure[4]
    local at = math.max(now + tonumber(ARGV[i + 1]), tonumber(failure[3] or '0'))
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
