"""The Lua scripts: each is one atomic step in Redis. Every check comes before the first write,
because Redis does not roll a script back.

Used by `core.redis.store` (threads, leases, approvals) and `core.redis.bus` (inbox and outbox streams).
"""

# One step's writes, as one script: check the sequence number (and, for a decision, that the approval is
# still pending and in time) before the first write, because Redis does not roll a script back.
# KEYS: 1 log, 2 meta, then the extra keys the ARGV indexes name (0 = none).
# ARGV: 1 expected seq, 2 snapshot, 3 thread id, 4 number of events, 5 created-at score, 6 thread index key
#       index, 7 active index key index, 8 active score ('' = not in flight), 9 approval key index (0: no
#       decision), 10 status ('' = decided already: only forget it), 11 by, 12 at, 13 comment, 14 now,
#       15 approval id, 16 updated index key index; then the events; then (outbox key index, outbound JSON)
#       pairs. With an approval, the three approval schedules, the decided set, the ended set of the new
#       status and the decider's index follow its key.
COMMIT = """
local current = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
local approval = tonumber(ARGV[9])
if approval > 0 and ARGV[10] ~= '' then
  local status = redis.call('HGET', KEYS[approval], 'status')
  if not status then return {2, 'missing'} end
  if status ~= 'pending' then return {2, status} end
  if tonumber(redis.call('HGET', KEYS[approval], 'expires') or '0') <= tonumber(ARGV[14]) then return {2, 'late'} end
  redis.call('HSET', KEYS[approval], 'status', ARGV[10], 'decided_by', ARGV[11], 'decided_at', ARGV[12],
             'comment', ARGV[13])
  for i = approval + 1, approval + 3 do redis.call('ZREM', KEYS[i], ARGV[15]) end
  redis.call('ZADD', KEYS[approval + 5], ARGV[14], ARGV[15])
  redis.call('ZADD', KEYS[approval + 6], ARGV[14], ARGV[15])
end
if approval > 0 then redis.call('ZREM', KEYS[approval + 4], ARGV[15]) end
local n = tonumber(ARGV[4])
for i = 17, 16 + n do
  current = current + 1
  redis.call('XADD', KEYS[1], current .. '-0', 'e', ARGV[i])
end
redis.call('HSET', KEYS[2], 'seq', current, 'state', ARGV[2])
local index, active = tonumber(ARGV[6]), tonumber(ARGV[7])
if index > 0 and tonumber(ARGV[1]) == 0 then redis.call('ZADD', KEYS[index], 'NX', ARGV[5], ARGV[3]) end
local updated = tonumber(ARGV[16])
if updated > 0 then redis.call('ZADD', KEYS[updated], ARGV[5], ARGV[3]) end
if active > 0 then
  if ARGV[8] == '' then redis.call('ZREM', KEYS[active], ARGV[3]) else redis.call('ZADD', KEYS[active], ARGV[8], ARGV[3]) end
end
for i = 17 + n, #ARGV, 2 do redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'o', ARGV[i + 1]) end
return {1, current}
"""

# Take the thread's lease and read its snapshot in one round trip (and, on Redis Cluster, the step
# outbound messages a crashed worker stored but did not relay). KEYS: lock, meta, thread outbox.
LEASE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local state = redis.call('HGET', KEYS[2], 'state') or ''
if ARGV[3] == '1' then return {1, state, redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 100)} end
return {1, state}
"""

# Decide an approval: pending -> approved/rejected in time, or -> expired past its deadline.
# KEYS: 1 the approval, 2-4 its schedules, 5 the decided set, 6 the ended set of the new status, 7 the decider's index.
# ARGV: 1 status, 2 by, 3 at, 4 comment, 5 now, 6 approval id.
DECIDE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'pending' then
  return {status, redis.call('HGET', KEYS[1], 'decided_by') or '', redis.call('HGET', KEYS[1], 'decided_at') or ''}
end
local expired = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0') <= tonumber(ARGV[5])
if expired and ARGV[1] ~= 'expired' then return {'late', '', ''} end
if ARGV[1] == 'expired' and not expired then return {'pending', '', ''} end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'decided_by', ARGV[2], 'decided_at', ARGV[3], 'comment', ARGV[4])
for i = 2, 4 do redis.call('ZREM', KEYS[i], ARGV[6]) end
-- Decided here, applied to its thread by a worker later: remembered until then, so a sweeper can re-drive it.
-- An edit ends the request for the old arguments: nothing to apply, no decision of anyone's.
local decision = ARGV[1] ~= 'expired' and ARGV[1] ~= 'edited'
if decision then redis.call('ZADD', KEYS[5], ARGV[5], ARGV[6]) end
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[6])
if decision then redis.call('ZADD', KEYS[7], ARGV[5], ARGV[6]) end
return {'ok'}
"""

# Record a quorum's votes: replace them only if they are still what the caller read (else 'changed', and
# it reads again), while the approval is pending and in time. KEYS: the approval. ARGV: 1 the votes read
# ('' for none), 2 the new votes, 3 now.
VOTE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'pending' then return status end
if tonumber(redis.call('HGET', KEYS[1], 'expires') or '0') <= tonumber(ARGV[3]) then return 'late' end
if (redis.call('HGET', KEYS[1], 'votes') or '') ~= ARGV[1] then return 'changed' end
redis.call('HSET', KEYS[1], 'votes', ARGV[2])
return 'ok'
"""

# Snooze a pending approval ("not now"): only while it is pending and in time, and only to a time before its
# deadline; its deadlines stay as they are. KEYS: 1 the approval, 2 the snoozes set. ARGV: 1 until (epoch
# seconds), 2 until (ISO), 3 by, 4 now, 5 approval id. Returns 'ok', a status, 'late', 'missing' or 'too_late'.
SNOOZE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'pending' then return status end
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
if expires <= tonumber(ARGV[4]) then return 'late' end
if expires <= tonumber(ARGV[1]) then return 'too_late' end
redis.call('HSET', KEYS[1], 'snoozed_until', ARGV[2], 'snoozed_by', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
return 'ok'
"""

ESCALATE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
return redis.call('HSETNX', KEYS[1], 'escalated', '1')
"""

# Claim the dedup key and enqueue in one step: no outage can fall between the two.
PUBLISH = """
if ARGV[1] == '1' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('XADD', KEYS[1], '*', 't', ARGV[3])
return 1
"""

# Reset the idle time of entries their consumer is still working on (JUSTID: the delivery count stays);
# an entry another consumer took over meanwhile is left alone. ARGV: group, consumer, entry ids.
KEEP = """
local kept = 0
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] ~= nil and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept
"""

# Trim a stream below the oldest entry any consumer group still needs: its oldest pending entry, or the
# first it has not read yet. A stream with no group (read by position: terminals, the web console) keeps
# what is newer than ARGV[1], an id made from a time. Returns {removed, entries not acknowledged by a group}.
TRIM = """
local function older(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  if tonumber(ams) ~= tonumber(bms) then return tonumber(ams) < tonumber(bms) end
  return tonumber(aseq) < tonumber(bseq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local floor, waiting, everything = nil, 0, #groups > 0
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local need = nil
  local unread = redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
  if #unread > 0 then need = unread[1][1] end
  if info['pending'] > 0 then
    local first = redis.call('XPENDING', KEYS[1], info['name'])[2]
    if need == nil or older(first, need) then need = first end
  end
  if type(info['lag']) == 'number' then
    waiting = waiting + info['lag']
  elseif #unread > 0 then  -- no lag after a trim: count what is unread, up to the warning level
    waiting = waiting + #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', ARGV[2])
  end
  waiting = waiting + info['pending']
  if need ~= nil then
    everything = false
    if floor == nil or older(need, floor) then floor = need end
  end
end
if ARGV[1] == 'count-only' then return {0, waiting} end
if everything then return {redis.call('XTRIM', KEYS[1], 'MAXLEN', 0), 0} end
return {redis.call('XTRIM', KEYS[1], 'MINID', floor or ARGV[1]), waiting}
"""

# An answer to the server question a running tool's worker waits for: taken once, only for the question
# asked now. KEYS: 1 the thread's asking hash, 2 the answer list. ARGV: 1 ask id, 2 answer JSON, 3 linger
# seconds. Returns 1 when taken, 0 when that question is not (or no longer) asked.
ANSWER = """
if redis.call('HGET', KEYS[1], 'ask_id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""

# Forget a question its worker no longer waits for (answered, timed out, the call ended), unless another
# has replaced it. KEYS: 1 the asking hash, 2 the answer list. ARGV: 1 ask id.
FORGET_ASK = """
if redis.call('HGET', KEYS[1], 'ask_id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
return 1
"""
