-- Delete a connection: its hash, its schedule and deadline entries, its id in the
-- integration's set, its backoff entry, and its count by status, in one step.
-- KEYS (one shard's): 1 connection hash, 2 schedule, 3 the integration's set of ids,
-- 4 token deadlines, 5-10 connections by status, a recount's flag, walked set and shadow
-- counts, and the indexes by status (move_counts.lua), 11 (when the provider is known) the
-- provider's backoff set.
-- ARGV: 1 schedule member, 2 connection id, 3 the integration.
-- Returns 1 when there was a hash to delete, else 0.
--#include move_counts
local before = redis.call('HGET', KEYS[1], 'status')
local deleted = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
if KEYS[11] then
  redis.call('ZREM', KEYS[11], ARGV[1])
end
move_counts(5, ARGV[3], ARGV[1], before, false, false)
return deleted
