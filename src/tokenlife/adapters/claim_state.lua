-- Consume an OAuth state once, binding it to the task that claimed it.
-- KEYS[1] pending key, KEYS[2] exchanging key (the claim); ARGV[1] owner (task id),
-- ARGV[2] claim TTL ms.
-- Returns {'done', summary} once the exchange has ended, whoever asks: a redelivered
-- task (same id or another carrying the same state) gets the first outcome back and
-- never sends the code again. Otherwise the first claim moves the record and returns
-- {'claimed', record, sent_at}; a retry of the same task gets the same (sent_at is set
-- when an earlier run already sent the code, '' if not). Another attempt gets {'busy'}
-- while the claim's owner has not ended (the state is neither unknown nor used up yet),
-- and nothing for an unknown, expired or foreign state.
local done = redis.call('HGET', KEYS[2], 'exchanged')
if done then
  return {'done', done}
end
local pending = redis.call('GET', KEYS[1])
if pending then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'pending', pending)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {'claimed', pending, ''}
end
local claim = redis.call('HMGET', KEYS[2], 'owner', 'pending', 'sent_at')
if claim[1] == ARGV[1] and claim[2] then
  return {'claimed', claim[2], claim[3] or ''}
end
if claim[1] then
  return {'busy'}
end
return false
