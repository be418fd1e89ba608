-- Store a pending authorization unless its state is pending or already being exchanged.
-- KEYS[1] pending key, KEYS[2] exchanging key; ARGV[1] record, ARGV[2] TTL seconds.
-- Checking both keys keeps a reused state from taking over a claim in progress.
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
