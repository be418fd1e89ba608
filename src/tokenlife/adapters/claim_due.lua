-- Claim due connections: return them with their due times and move each one's score to
-- the end of a lease, in one step, so two beats never hand out the same connection and a
-- crashed worker's connections come due again when the lease ends.
-- The lease is bounded by the time the member's token has left (half of it, within
-- [min, max]): a connection whose worker died comes due again before its token lapses.
-- Members without a recorded token deadline get the longest lease.
-- Time is the Redis server's (TIME), so every worker agrees; scripts that call TIME
-- before writing need effects replication, the default since Redis 5 (3.2-4 would need
-- redis.replicate_commands()).
-- KEYS[1] schedule, KEYS[2] token deadlines; ARGV[1] longest lease, ARGV[2] shortest
-- lease (seconds), ARGV[3] how many at most.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local longest, shortest = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now),
  'WITHSCORES', 'LIMIT', 0, ARGV[3])
for i = 1, #due, 2 do
  local lease = longest
  local deadline = redis.call('ZSCORE', KEYS[2], due[i])
  if deadline then
    lease = math.max(shortest, math.min(longest, (tonumber(deadline) - now) / 2))
  end
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + lease), due[i])
end
return due
