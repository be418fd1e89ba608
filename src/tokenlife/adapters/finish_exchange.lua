-- End an exchange that stored nothing: publish its exchange.failed event and mark the
-- claim with the summary, in one step, so a redelivered task returns the same summary
-- and emits nothing more. The first outcome wins.
-- KEYS[1] the state's claim, KEYS[2] event stream.
-- ARGV[1] event type, ARGV[2] event data (JSON), ARGV[3] summary (JSON), ARGV[4] stream
-- length cap, ARGV[5] claim TTL ms, ARGV[6] JSON list of [type, data] events published
-- after it (its alert).
-- Returns the summary the claim holds.
local done = redis.call('HGET', KEYS[1], 'exchanged')
if done then
  return done
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', ARGV[1], 'data', ARGV[2])
for _, event in ipairs(cjson.decode(ARGV[6] or '[]')) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', event[1], 'data', event[2])
end
redis.call('HSET', KEYS[1], 'exchanged', ARGV[3])
-- The record (with the encrypted PKCE verifier) is of no more use.
redis.call('HDEL', KEYS[1], 'pending')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return ARGV[3]
