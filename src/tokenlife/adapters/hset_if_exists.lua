-- Set a field of a hash only if the hash exists: a late write (an alert noted on a
-- connection) must never re-create a deleted connection as a half-written record.
-- KEYS[1] hash; ARGV[1] field; ARGV[2] value. Returns 1 when set, 0 when the hash is gone.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
