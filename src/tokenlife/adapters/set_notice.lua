-- A dashboard session's one-time notice, set only while the session lives. A refresh that
-- finishes after a logout (or the session's expiry) must not re-create the hash: HSET on a
-- missing key makes a new one without a TTL, a session record that would never go away.
-- HSET on the existing hash keeps its TTL. KEYS[1] session hash; ARGV[1] the notice.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'notice', ARGV[1])
return 1
