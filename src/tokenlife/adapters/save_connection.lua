-- Replace a connection's hash in one step, keeping created_at and bumping version.
-- KEYS[1] connection hash, KEYS[2] the integration's set of connection ids.
-- ARGV[1] connection id, ARGV[2] now, ARGV[3..] field/value pairs.
local created = redis.call('HGET', KEYS[1], 'created_at')
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HSET', KEYS[1], 'created_at', created or ARGV[2], 'updated_at', ARGV[2],
  'version', version)
redis.call('SADD', KEYS[2], ARGV[1])
return version
