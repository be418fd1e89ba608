-- Delete a connection: its hash, its schedule and deadline entries, its id in the
-- integration's set, its backoff entry, and its count by status, in one step.
-- KEYS: 1 connection hash, 2 schedule, 3 the integration's set of ids, 4 token deadlines,
-- 5 the provider's backoff set ('-' when unknown), 6 connections by status, 7-9 a
-- recount's flag, walked set and shadow counts (move_counts.lua).
-- ARGV: 1 schedule member, 2 connection id, 3 the integration.
-- Returns 1 when there was a hash to delete, else 0.
--#include move_counts
local before = redis.call('HGET', KEYS[1], 'status')
local deleted = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
if KEYS[5] ~= '-' then
  redis.call('ZREM', KEYS[5], ARGV[1])
end
move_counts(KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[3], ARGV[1], before, false, false)
return deleted
