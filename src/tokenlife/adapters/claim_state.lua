-- Consume an OAuth state once, binding it to the task that claimed it.
-- KEYS[1] pending key, KEYS[2] exchanging key; ARGV[1] owner (task id), ARGV[2] claim TTL ms.
-- The first claim moves the record; a retry of the same task gets it again; anyone else
-- (a replayed callback) gets nothing.
local pending = redis.call('GET', KEYS[1])
if pending then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'pending', pending)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return pending
end
local claim = redis.call('HMGET', KEYS[2], 'owner', 'pending')
if claim[1] == ARGV[1] then
  return claim[2]
end
return false
