-- A provider answers again: the refreshes its breaker held come due, in the order given
-- (soonest-lapsing first), one every ARGV[2] seconds from ARGV[1]: a ramp, not a wave at a
-- host that just came back. Never before the provider's own Retry-After
-- (`retry_not_before`); a retry waiting out a backoff of its outage failures comes too (its
-- stored due time moves, or the claim would find it not due). LT: a connection already due
-- sooner keeps its time; XX, and no write to a missing record: a deleted connection is not
-- put back. One refreshed since the breaker opened (the probe that closed it, a refresh
-- someone asked for) is not held any more: it keeps its schedule.
-- KEYS: 1 the host's held set, 2 schedule, then each member's connection hash.
-- ARGV: 1 the first due time, 2 seconds between two, 3 when the breaker opened ('' when
-- unknown: nothing is skipped), then the
-- members, in order.
-- Returns how many came due.
local at, step, opened = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local moved = 0
for i = 4, #ARGV do
  local member, hash = ARGV[i], KEYS[i - 1]
  redis.call('ZREM', KEYS[1], member)
  local due = at + moved * step
  local held = redis.call('HMGET', hash, 'retry_not_before', 'next_refresh_at',
    'last_refreshed_at')
  if opened and tonumber(held[3] or '0') >= opened then
    held[2] = nil
    due = nil
  else
    due = math.max(due, tonumber(held[1] or '0'))
  end
  if due then
    local score = string.format('%.6f', due)
    if redis.call('ZADD', KEYS[2], 'XX', 'LT', 'CH', score, member) == 1 then
      moved = moved + 1
    end
    if held[2] and tonumber(held[2]) > due then
      redis.call('HSET', hash, 'next_refresh_at', score)
    end
  end
end
return moved
