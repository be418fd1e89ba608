-- Replace a connection's hash in one step, keeping created_at and bumping version, and
-- put it on (or take it off) the refresh schedule.
-- KEYS[1] connection hash, KEYS[2] the integration's set of ids, KEYS[3] schedule.
-- ARGV[1] connection id, ARGV[2] now, ARGV[3] schedule member, ARGV[4] due time or ''
-- (not scheduled), ARGV[5] JSON object of fields.
local created = redis.call('HGET', KEYS[1], 'created_at')
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
local fields = cjson.decode(ARGV[5])
redis.call('DEL', KEYS[1])
for name, value in pairs(fields) do
  redis.call('HSET', KEYS[1], name, value)
end
redis.call('HSET', KEYS[1], 'created_at', created or ARGV[2], 'updated_at', ARGV[2],
  'version', version)
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
return version
