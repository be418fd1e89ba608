-- Replace a connection's hash in one step, keeping created_at and bumping version, and
-- put it on (or take it off) the refresh schedule. At the end of an exchange, the same
-- step publishes the connection's events and marks the state's claim with the summary,
-- so a task delivered twice finds the mark and never sends the code again.
-- KEYS (one shard's: an exchange's state is drawn in its connection's shard): 1 connection
-- hash, 2 the integration's set of ids, 3 schedule, 4 the state's claim (for a save
-- outside an exchange, a key of the shard that is never written), 5 event stream, 6 token
-- deadlines,
-- 7-12 connections by status (counted as the status changes), a recount's flag, walked
-- set and shadow counts, and the indexes by status (move_counts.lua), 13 (optional) the
-- provider's backoff set.
-- ARGV: 1 connection id, 2 now, 3 schedule member, 4 due time or '' (not scheduled),
-- 5 JSON object of fields, 6 the account's subject or '' (unknown), 7 '1' when another
-- subject may replace a stored one, 8 JSON list of [type, data] events to publish,
-- 9 the connection's last alert (JSON) or '', 10 summary (JSON) to mark the claim with,
-- 11 JSON [type, data] of the event for a refused account change, 12 its summary,
-- 13 stream length cap, 14 claim TTL ms, 15 '1' when KEYS[4] is a claim.
-- Returns {'saved', version, summary}; {'done', 0, summary} when the claim already holds
-- an outcome; {'subject_mismatch', 0, summary} when the stored connection belongs to
-- another account, {'subject_unknown', 0, summary} when it is bound to an account and the
-- provider didn't say who this one is (nothing of it changes in either case).
-- The stored subject is the last account a provider confirmed: a save that doesn't know
-- the subject keeps it, so a save without an ID token can't unbind a connection.
--#include move_counts
local claimed = ARGV[15] == '1'
if claimed then
  local done = redis.call('HGET', KEYS[4], 'exchanged')
  if done then
    return {'done', 0, done}
  end
end
local function publish(event)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[13], '*', 'type', event[1], 'data', event[2])
end
local function mark(summary)
  if claimed then
    redis.call('HSET', KEYS[4], 'exchanged', summary)
    redis.call('HDEL', KEYS[4], 'pending')
    redis.call('PEXPIRE', KEYS[4], ARGV[14])
  end
end
-- Checked here, not before the call, so a concurrent exchange can't slip past. Only an
-- exchange is checked: a save outside one (tests, imports) has no refusal to publish.
local stored = redis.call('HGET', KEYS[1], 'subject')
if claimed and stored and stored ~= ARGV[6] and ARGV[7] ~= '1' then
  publish(cjson.decode(ARGV[11]))
  mark(ARGV[12])
  if ARGV[6] == '' then
    return {'subject_unknown', 0, ARGV[12]}
  end
  return {'subject_mismatch', 0, ARGV[12]}
end
local subject = ARGV[6]
if subject == '' then
  subject = stored
end
local created = redis.call('HGET', KEYS[1], 'created_at')
local before = redis.call('HGET', KEYS[1], 'status')
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
local fields = cjson.decode(ARGV[5])
redis.call('DEL', KEYS[1])
for name, value in pairs(fields) do
  redis.call('HSET', KEYS[1], name, value)
end
redis.call('HSET', KEYS[1], 'created_at', created or ARGV[2], 'updated_at', ARGV[2],
  'version', version)
if subject then
  redis.call('HSET', KEYS[1], 'subject', subject)
end
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'last_alert', ARGV[9])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
move_counts(7, fields['integration'], ARGV[3], before,
  fields['status'] or false, true)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
-- Claims bound their leases by when the token lapses (claim_due.lua), from the first
-- refresh on: a worker killed with its batch must not hold a 60 s token for 300 s.
if fields['expires_at'] and ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[6], fields['expires_at'], ARGV[3])
else
  redis.call('ZREM', KEYS[6], ARGV[3])
end
-- A new authorization ends any failing stretch: out of the provider's backoff set
-- (KEYS[13], when given), so a later recovery never moves the new record's schedule.
if KEYS[13] then
  redis.call('ZREM', KEYS[13], ARGV[3])
end
for _, event in ipairs(cjson.decode(ARGV[8])) do
  publish(event)
end
mark(ARGV[10])
return {'saved', version, ARGV[10]}
