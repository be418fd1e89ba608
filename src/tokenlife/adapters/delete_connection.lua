-- Delete a connection: its hash, its schedule and deadline entries, its id in the
-- integration's set, its backoff entry, and its count by status, in one step.
-- KEYS: 1 connection hash, 2 schedule, 3 the integration's set of ids, 4 token deadlines,
-- 5 the provider's backoff set ('-' when unknown), 6 connections by status.
-- ARGV: 1 schedule member, 2 connection id.
-- Returns 1 when there was a hash to delete, else 0.
local stored = redis.call('HMGET', KEYS[1], 'integration', 'status')
local deleted = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
if KEYS[5] ~= '-' then
  redis.call('ZREM', KEYS[5], ARGV[1])
end
if stored[1] and stored[2] then
  redis.call('HINCRBY', KEYS[6], stored[1] .. ':' .. stored[2], -1)
end
return deleted
