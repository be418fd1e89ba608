-- Compare-and-set on a connection's version: a stale worker can't overwrite newer tokens.
-- KEYS[1] connection hash, KEYS[2] schedule.
-- ARGV[1] expected version, ARGV[2] '1' to bump the version (tokens changed), ARGV[3] now,
-- ARGV[4] schedule member, ARGV[5] due time, '' to leave the schedule as is, or '-' to
-- take the connection off it, ARGV[6] JSON object of fields to set, ARGV[7] JSON list of
-- fields to delete. Returns the version, or -1 when it didn't match (nothing written).
local current = redis.call('HGET', KEYS[1], 'version')
if current ~= ARGV[1] then
  return -1
end
local version = tonumber(current)
if ARGV[2] == '1' then
  version = version + 1
end
for name, value in pairs(cjson.decode(ARGV[6])) do
  redis.call('HSET', KEYS[1], name, value)
end
for _, name in ipairs(cjson.decode(ARGV[7])) do
  redis.call('HDEL', KEYS[1], name)
end
redis.call('HSET', KEYS[1], 'version', version, 'updated_at', ARGV[3])
if ARGV[5] == '-' then
  redis.call('ZREM', KEYS[2], ARGV[4])
elseif ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
return version
