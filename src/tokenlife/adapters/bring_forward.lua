-- Connections held back for a refusal that has ended (an expired client secret replaced):
-- due at ARGV[1] now. A connection deleted meanwhile is not re-created (its hash and its
-- schedule member are written only while the hash exists; XX: a member out of the schedule,
-- being refreshed, is left to that refresh); retry_not_before and its holder go.
-- KEYS: 1 schedule, then per connection its hash. ARGV: 1 now, then per connection its
-- schedule member, in the same order. Returns how many moved.
local moved = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HDEL', KEYS[i], 'retry_not_before', 'retry_held_by')
    redis.call('HSET', KEYS[i], 'next_refresh_at', ARGV[1])
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
