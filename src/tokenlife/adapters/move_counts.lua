-- Included by the scripts that write a connection's status (scripts.py): move the counts
-- of connections by status for one connection whose status went from `before` to `after`
-- (false when there was none, or is none now), and, while a recount runs (its flag set),
-- its shadow counts too (adapters/status_counts.py): a connection the walk has counted
-- moves there as well; one it has not, saved now, is counted there as it is after the save
-- and marked, so the walk skips it. An update or delete of one not walked yet changes
-- nothing there: the walk reads what is stored when it gets to it.
local function move_counts(counts, flag, walked, shadow, integration, member, before, after,
                           saved)
  local function add(hash, status, delta)
    if status then
      redis.call('HINCRBY', hash, integration .. ':' .. status, delta)
    end
  end
  if before ~= after then
    add(counts, before, -1)
    add(counts, after, 1)
  end
  if redis.call('EXISTS', flag) == 0 then
    return
  end
  if redis.call('SISMEMBER', walked, member) == 1 then
    if before ~= after then
      add(shadow, before, -1)
      add(shadow, after, 1)
    end
  elseif saved then
    add(shadow, after, 1)
    redis.call('SADD', walked, member)
  end
end
