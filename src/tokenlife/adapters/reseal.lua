-- Replace stored ciphertexts with the same secrets under another key, only where nothing
-- changed since they were read (keys rotate, services/key_rotation.py).
-- KEYS[1] the record: a connection hash, a pending authorization (a string) or an
-- exchange claim (a hash).
-- ARGV[1] the connection version read, or '' for records without one; ARGV[2] JSON list
-- of [field, old, new], field '' meaning the string value itself.
-- Returns 1 when written, 0 when the record changed or went away meanwhile.
-- The version is compared, never bumped: the plaintext is unchanged, and a refresh that
-- read this version before us must still land its compare-and-set (update_connection.lua);
-- a bump would make it fail and lose the refresh token the provider just rotated.
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then
  return 0
end
local changes = cjson.decode(ARGV[2])
for _, change in ipairs(changes) do
  local current
  if change[1] == '' then
    current = redis.call('GET', KEYS[1])
  else
    current = redis.call('HGET', KEYS[1], change[1])
  end
  if current ~= change[2] then
    return 0
  end
end
for _, change in ipairs(changes) do
  if change[1] == '' then
    redis.call('SET', KEYS[1], change[3], 'KEEPTTL')
  else
    redis.call('HSET', KEYS[1], change[1], change[3])
  end
end
return 1
