-- Take one of a provider's concurrency slots if fewer than the limit are in use.
-- KEYS[1] the provider's slot set; ARGV[1] now, ARGV[2] slot expiry, ARGV[3] limit,
-- ARGV[4] our token. Expired slots (crashed workers) are dropped first.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  return 1
end
return 0
