-- Included by the scripts that write a connection's status (scripts.py): move the counts
-- of connections by status for one connection whose status went from `before` to `after`
-- (false when there was none, or is none now), and, while a recount runs (its flag set),
-- its shadow counts too (adapters/status_counts.py): a connection the walk has counted
-- moves there as well; one it has not, saved now, is counted there as it is after the save
-- and marked, so the walk skips it. An update or delete of one not walked yet changes
-- nothing there: the walk reads what is stored when it gets to it.
-- The same step keeps the shard's index of connections by status for the statuses a
-- listing filters on without reading every record (degraded, reauthorization_required;
-- adapters/connection_listing.py): members are schedule members.
-- KEYS[first .. first + 5]: the counts, a recount's flag, walked set and shadow counts,
-- the degraded index and the reauthorization_required index (Keys.status_count_keys).
local function move_counts(first, integration, member, before, after, saved)
  local counts, flag, walked, shadow = KEYS[first], KEYS[first + 1], KEYS[first + 2],
    KEYS[first + 3]
  local indexes = {degraded = KEYS[first + 4], reauthorization_required = KEYS[first + 5]}
  local function add(hash, status, delta)
    if status then
      redis.call('HINCRBY', hash, integration .. ':' .. status, delta)
    end
  end
  if before ~= after then
    add(counts, before, -1)
    add(counts, after, 1)
    if before and indexes[before] then
      redis.call('ZREM', indexes[before], member)
    end
    if after and indexes[after] then
      redis.call('ZADD', indexes[after], 0, member)
    end
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
