-- The end of a recount's walk: its shadow counts become the counts, whole since now.
-- KEYS: 1 the recount's flag, 2 walked set, 3 shadow counts, 4 counts.
-- ARGV: 1 the recount's token, 2 now.
-- Returns 1, or 0 when the flag is no longer this recount's (nothing changed).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[4])
else
  redis.call('DEL', KEYS[4])
end
redis.call('HSET', KEYS[4], '_counted_at', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
return 1
