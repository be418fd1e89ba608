-- Take a connection for a refresh: its lock, its fields and, when it has a refresh token,
-- one of its provider's concurrency slots. One round trip on the hot path.
-- KEYS: 1 lock, 2 provider slots, 3 connection hash.
-- ARGV: 1 lock token, 2 lock TTL ms, 3 now, 4 slot expiry, 5 slot limit, 6 slot token.
-- Returns {'locked'}, {'gone'}, {'throttled'} or {'ok', fields, 'slot' | 'noslot'}.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'locked'}
end
local fields = redis.call('HGETALL', KEYS[3])
if #fields == 0 then
  redis.call('DEL', KEYS[1])
  return {'gone'}
end
if redis.call('HEXISTS', KEYS[3], 'refresh_token') == 0 then
  return {'ok', fields, 'noslot'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
  return {'throttled'}
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
return {'ok', fields, 'slot'}
