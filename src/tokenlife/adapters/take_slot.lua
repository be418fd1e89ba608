-- Take one of a provider's concurrency slots for a refresh, sent in the same pipeline as its
-- claim (claim_connection.lua); or, with no limit, make a slot taken so lapse sooner (it
-- lives no longer than the claim's lock). The slots are one sorted set for the fleet,
-- scored by when each lapses: a crashed worker's slots free themselves.
-- Time is the Redis server's (TIME); effects replication (Redis 5+ default) allows it.
-- KEYS: 1 the provider's slots. ARGV: 1 slot token, 2 limit ('' to shorten a slot taken),
-- 3 TTL seconds.
-- Returns 1 when taken (or shortened), 0 when every slot is taken.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local lapses = string.format('%.6f', now + tonumber(ARGV[3]))
if ARGV[2] == '' then
  return redis.call('ZADD', KEYS[1], 'XX', 'CH', 'LT', lapses, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], lapses, ARGV[1])
return 1
