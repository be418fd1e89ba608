-- Compare-and-set on a connection's version: a stale worker can't overwrite newer tokens,
-- nor newer bookkeeping. Every write bumps the version.
-- KEYS[1] connection hash, KEYS[2] schedule.
-- ARGV[1] expected version, ARGV[2] now, ARGV[3] schedule member, ARGV[4] due time, '' to
-- leave the schedule as is, or '-' to take the connection off it, ARGV[5] JSON object of
-- fields to set, ARGV[6] JSON list of fields to delete.
-- Returns the new version, or -1 when the version didn't match (nothing written).
local current = redis.call('HGET', KEYS[1], 'version')
if current ~= ARGV[1] then
  return -1
end
local version = tonumber(current) + 1
for name, value in pairs(cjson.decode(ARGV[5])) do
  redis.call('HSET', KEYS[1], name, value)
end
for _, name in ipairs(cjson.decode(ARGV[6])) do
  redis.call('HDEL', KEYS[1], name)
end
redis.call('HSET', KEYS[1], 'version', version, 'updated_at', ARGV[2])
if ARGV[4] == '-' then
  redis.call('ZREM', KEYS[2], ARGV[3])
elseif ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return version
