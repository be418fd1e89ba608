-- One page of a recount's walk (adapters/status_counts.py): each connection not counted
-- yet is counted in the shadow counts as it is stored now, and marked counted; the
-- scripts that write a status keep the shadow in step from then on (move_counts.lua). The
-- walk also puts each connection in the index of its status (and out of the other), so a
-- recount mends the indexes too.
-- KEYS: 1 the recount's flag, 2 walked set, 3 shadow counts, 4 the degraded index, 5 the
-- reauthorization_required index, then each connection's hash.
-- ARGV: 1 the recount's token, 2 flag TTL ms, 3 the integration, then each connection's
-- member, in the same order.
-- Returns how many were counted, or -1 when the flag is no longer this recount's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local indexes = {degraded = KEYS[4], reauthorization_required = KEYS[5]}
local counted = 0
for i = 4, #ARGV do
  local member = ARGV[i]
  if redis.call('SISMEMBER', KEYS[2], member) == 0 then
    local status = redis.call('HGET', KEYS[i + 2], 'status')
    redis.call('ZREM', KEYS[4], member)
    redis.call('ZREM', KEYS[5], member)
    if status then
      redis.call('HINCRBY', KEYS[3], ARGV[3] .. ':' .. status, 1)
      counted = counted + 1
      if indexes[status] then
        redis.call('ZADD', indexes[status], 0, member)
      end
    end
    redis.call('SADD', KEYS[2], member)
  end
end
return counted
