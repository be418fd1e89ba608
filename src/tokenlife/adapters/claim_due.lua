-- Claim due connections: return them with their due times and move each one's score to
-- the end of a lease, in one step, so two beats never hand out the same connection and a
-- crashed worker's connections come due again when the lease ends.
-- KEYS[1] schedule; ARGV[1] now, ARGV[2] lease end, ARGV[3] how many at most.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  ARGV[3])
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], ARGV[2], due[i])
end
return due
