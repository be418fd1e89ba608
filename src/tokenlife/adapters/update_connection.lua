-- Compare-and-set on a connection's version: a stale worker can't overwrite newer tokens,
-- nor newer bookkeeping. Every write bumps the version. When the write lands, the event
-- (if any) is published in the same step; the caller's lock (if any) is given back either
-- way, and its provider slot by a ZREM in the same pipeline (the slots are not in this
-- shard). One round trip for the end of a refresh.
-- A write may carry an operation id: when a retry finds the version one past the one it
-- expected and that id on it, its earlier attempt landed (the reply was lost) and it
-- counts as written, not as a conflict.
-- KEYS (one shard's): 1 connection hash, 2 schedule, 3 lock, 4 event stream, 5 the
-- provider's set of connections in backoff, 6 token deadlines, 7-12 connections by status
-- (counted here when the status changes), a recount's flag, walked set and shadow counts,
-- and the indexes by status (move_counts.lua).
-- ARGV: 1 expected version, 2 now, 3 schedule member, 4 due time ('' leaves the schedule
-- as is, '-' takes the connection off it), 5 JSON object of fields to set, 6 JSON list of
-- fields to delete, 7 lock token or '', 8 event type or '', 9 event data (JSON),
-- 10 approximate length cap of the stream, 11 the connection's alert to show (JSON; '-'
-- clears it, '' leaves it: core/connection_alert.py decides from the version expected, so
-- it is as atomic as the write), 12 operation id or '', 13 backoff: 'add' (scored by the
-- due time), 'rem' or '', 14 token deadline ('' leaves it, '-' removes it), 15 the
-- integration (the one in the hash's key).
-- Returns {the new version, or -1 when the version didn't match (nothing written); when a
-- written 'rem' took the connection out of the backoff set, how many of the provider's
-- connections still wait there in this shard (one ZCARD: the caller pulls them forward
-- only if any)}.
--#include move_counts
local result = -1
local waiting = 0
local current = redis.call('HGET', KEYS[1], 'version')
if current == ARGV[1] then
  result = tonumber(ARGV[1]) + 1
  local before = redis.call('HGET', KEYS[1], 'status')
  for name, value in pairs(cjson.decode(ARGV[5])) do
    redis.call('HSET', KEYS[1], name, value)
  end
  for _, name in ipairs(cjson.decode(ARGV[6])) do
    redis.call('HDEL', KEYS[1], name)
  end
  redis.call('HSET', KEYS[1], 'version', result, 'updated_at', ARGV[2])
  move_counts(7, ARGV[15], ARGV[3], before,
    redis.call('HGET', KEYS[1], 'status'), false)
  if ARGV[12] ~= '' then
    redis.call('HSET', KEYS[1], 'last_operation', ARGV[12])
  else
    redis.call('HDEL', KEYS[1], 'last_operation')
  end
  if ARGV[4] == '-' then
    redis.call('ZREM', KEYS[2], ARGV[3])
  elseif ARGV[4] ~= '' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  end
  if ARGV[8] ~= '' then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'type', ARGV[8], 'data', ARGV[9])
  end
  if ARGV[11] == '-' then
    redis.call('HDEL', KEYS[1], 'last_alert')
  elseif ARGV[11] ~= '' then
    redis.call('HSET', KEYS[1], 'last_alert', ARGV[11])
  end
  if ARGV[13] == 'add' and ARGV[4] ~= '' and ARGV[4] ~= '-' then
    redis.call('ZADD', KEYS[5], ARGV[4], ARGV[3])
  elseif ARGV[13] == 'rem' then
    redis.call('ZREM', KEYS[5], ARGV[3])
    waiting = redis.call('ZCARD', KEYS[5])
  end
  if ARGV[14] == '-' then
    redis.call('ZREM', KEYS[6], ARGV[3])
  elseif ARGV[14] ~= '' then
    redis.call('ZADD', KEYS[6], ARGV[14], ARGV[3])
  end
elseif ARGV[12] ~= '' and current and tonumber(current) == tonumber(ARGV[1]) + 1
    and redis.call('HGET', KEYS[1], 'last_operation') == ARGV[12] then
  result = tonumber(current)
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[3]) == ARGV[7] then
  redis.call('DEL', KEYS[3])
end
return {result, waiting}
