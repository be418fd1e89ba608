-- Keep a consumer's entries from other consumers' claims: reset the idle time (XCLAIM
-- JUSTID: the delivery count stays) of each entry that this consumer still holds, and
-- only those. An entry acknowledged meanwhile, or rightly claimed by another consumer
-- after it waited the idle time, is left as it is: a plain XCLAIM would take it back.
-- KEYS[1] a shard's event stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] stream ids.
-- Returns {id, times delivered, ...} of the entries kept.
local kept = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    kept[#kept + 1] = id
    kept[#kept + 1] = pending[1][4]
  end
end
return kept
