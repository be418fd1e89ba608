-- Count a batch's outcomes for one provider host and move its breaker
-- (core/provider_breaker.py has the rules). Closed: a sliding window of two buckets of
-- ARGV[2] seconds; it opens when the estimated failures in the window reach ARGV[3] and
-- make at least ARGV[4] of the outcomes. Open: a probe's answer closes it.
-- The caller's clock (ARGV[1]) is the breaker's throughout: claims compare the same times
-- (claim_connection.lua), and tests pass their own.
-- KEYS: 1 the breaker's hash, 2 the set of open breakers.
-- ARGV: 1 now, 2 window seconds, 3 least failures, 4 failure rate, 5 answered,
-- 6 answered by probes, 7 the host, 8 probe interval seconds, 9 TTL of a closed breaker's
-- counts, 10 TTL of an open breaker, 11 failed probes, then pairs of failure kind and count
-- (the failed probes among them).
-- Returns {'closed'} | {'open'} | {'opened', failures, answered, kinds...} |
-- {'recovered', opened_at, probes_failed}.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local answered, probe_ok = tonumber(ARGV[5]), tonumber(ARGV[6])
local failed = 0
for i = 12, #ARGV, 2 do
  failed = failed + tonumber(ARGV[i + 1])
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'open' then
  if probe_ok > 0 then
    local held = redis.call('HMGET', KEYS[1], 'opened_at', 'probes_failed')
    redis.call('DEL', KEYS[1])
    redis.call('SREM', KEYS[2], ARGV[7])
    return {'recovered', held[1] or '', held[2] or '0'}
  end
  if tonumber(ARGV[11]) > 0 then
    redis.call('HINCRBY', KEYS[1], 'probes_failed', ARGV[11])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  return {'open'}
end
if failed == 0 and answered + probe_ok == 0 then
  return {'closed'}
end
local h = redis.call('HGETALL', KEYS[1])
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
local start = tonumber(f['start'] or '')
local cur_f, cur_a = tonumber(f['cur_f'] or '0'), tonumber(f['cur_a'] or '0')
local prev_f, prev_a = tonumber(f['prev_f'] or '0'), tonumber(f['prev_a'] or '0')
-- The kinds of failure, per bucket, as 'c:<kind>' (this bucket) and 'p:<kind>' (the last).
local rotate = false
if start == nil or now - start >= 2 * window then
  start, cur_f, cur_a, prev_f, prev_a = now, 0, 0, 0, 0
  redis.call('DEL', KEYS[1])
  f = {}
elseif now - start >= window then
  start, prev_f, prev_a, cur_f, cur_a = start + window, cur_f, cur_a, 0, 0
  rotate = true
end
if rotate then
  for name, value in pairs(f) do
    if string.sub(name, 1, 2) == 'p:' then
      redis.call('HDEL', KEYS[1], name)
    elseif string.sub(name, 1, 2) == 'c:' then
      redis.call('HDEL', KEYS[1], name)
      redis.call('HSET', KEYS[1], 'p:' .. string.sub(name, 3), value)
    end
  end
end
for i = 12, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[i], ARGV[i + 1])
end
cur_f, cur_a = cur_f + failed, cur_a + answered + probe_ok
-- The last bucket counts for the part of it still inside the window.
local weight = math.max(0, 1 - (now - start) / window)
local est_f, est_a = cur_f + prev_f * weight, cur_a + prev_a * weight
redis.call('HSET', KEYS[1], 'start', string.format('%.6f', start), 'cur_f', cur_f,
  'cur_a', cur_a, 'prev_f', prev_f, 'prev_a', prev_a)
if est_f >= tonumber(ARGV[3]) and est_f / (est_f + est_a) >= tonumber(ARGV[4]) then
  local kinds = {}
  local now_h = redis.call('HGETALL', KEYS[1])
  local counts = {}
  for i = 1, #now_h, 2 do
    local name = now_h[i]
    local prefix = string.sub(name, 1, 2)
    if prefix == 'c:' or prefix == 'p:' then
      local kind = string.sub(name, 3)
      counts[kind] = (counts[kind] or 0) + tonumber(now_h[i + 1])
    end
  end
  for kind, n in pairs(counts) do
    table.insert(kinds, kind)
    table.insert(kinds, tostring(n))
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', string.format('%.6f', now),
    'probe_at', string.format('%.6f', now + tonumber(ARGV[8])), 'probes_failed', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  redis.call('SADD', KEYS[2], ARGV[7])
  local reply = {'opened', string.format('%.3f', est_f), string.format('%.3f', est_a)}
  for _, v in ipairs(kinds) do table.insert(reply, v) end
  return reply
end
redis.call('EXPIRE', KEYS[1], ARGV[9])
return {'closed'}
