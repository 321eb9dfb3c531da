"""The job service's atomic steps on the API's side, as Lua run inside Redis.

Every state change is a compare-and-set: a job starts only from `queued`,
and only the attempt that started it may finish it. That makes redelivery
harmless (a message delivered twice, a job re-queued while its first worker
was merely slow): it runs or writes a result at most once. Key names arrive
as KEYS, built by tasks.keyspace; only hash fields are spelled here.

Every time a step compares or stores comes from Redis's own clock (`TIME`),
never the caller's: an API host, a worker and the reconciler may disagree
by minutes, and a lease judged by two clocks is re-queued for nothing.
"""

from __future__ import annotations

#: Priorities follow the broker: 0 runs first, 9 last. Score = priority * SCALE + milliseconds.
PRIORITY_SCALE = 10**13

#: Redis's clock, in seconds (shared by every script).
NOW = """
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# A delivered synchronous job keeps only what billing and audit need (status,
# usage, times; not the prompt, not the result). The record is written afresh,
# so Redis stores it as a small listpack rather than the hash table the prompt
# needed. Returns the record as it was.
_KEEP_AUDIT = """
local function keep_audit(job_key)
  local record = redis.call('HGETALL', job_key)
  local kept = {}
  for i = 1, #record, 2 do
    if record[i] ~= 'request' and record[i] ~= 'result' then
      kept[#kept + 1] = record[i]
      kept[#kept + 1] = record[i + 1]
    end
  end
  local ttl = redis.call('PTTL', job_key)
  redis.call('DEL', job_key)
  redis.call('HSET', job_key, unpack(kept))
  if ttl > 0 then redis.call('PEXPIRE', job_key, ttl) end
  return record
end
"""

# The end of every job, whoever writes it: the end event its waiters block on,
# its ended counter, its key's open slot given back, and its retention: a
# listed (queue) job keeps everything for `retention`; a synchronous one is
# kept `sync retention` (and trimmed once its caller has read it).
# A carried body (a completed synchronous job nobody streams) rides in the end
# event, which is all its caller reads: the record is trimmed here and then, and
# the event stream outlives it by `grace` only.
# KEYS[1] job, KEYS[2] events, KEYS[open_at] the owner's open set, KEYS[stats_at] stats.
_CLOSE = (
    _KEEP_AUDIT
    + """
local function close(status, retention, sync_retention, open_key, stats_key, job_id, body, grace)
  redis.call('HSET', KEYS[1], 'ended', '1')
  local listed = redis.call('HGET', KEYS[1], 'listed') == '1'
  local carried = body and not listed
  local ttl = sync_retention
  if listed then ttl = retention end
  redis.call('EXPIRE', KEYS[1], ttl)
  if carried then
    redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', status, 'result', body)
    keep_audit(KEYS[1])
    redis.call('EXPIRE', KEYS[2], grace)
  else
    redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', status)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  redis.call('ZREM', open_key, job_id)
  redis.call('HINCRBY', stats_key, 'ended:' .. redis.call('HGET', KEYS[1], 'model') .. ':' .. status, 1)
  return carried
end
"""
)

# Ends a job that never started (cancelled or expired while queued): no worker
# will write its end, so wake its waiters here.
# KEYS: job, events, queue zset, deadlines, stats, open. ARGV: job id, retention, sync retention.
_END_QUEUED = (
    NOW
    + _CLOSE
    + """
local function end_queued(status)
  redis.call('HSET', KEYS[1], 'status', status, 'completed_at', server_now())
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  close(status, ARGV[2], ARGV[3], KEYS[6], KEYS[5], ARGV[1])
end
"""
)

# KEYS: job, queue, deadlines, owner jobs, tombstone, stats, open, waiting[, broker list].
# ARGV: job id, owner, model, priority, request json, endpoint, expires in ('' = never),
#       listed (0/1), record ttl, max open, max waiting, wait seconds ('' = nobody waits),
#       meta json ('' = none: what the submitting route echoes back, e.g. a Responses object's parameters),
#       the broker message (with the broker list; tasks.jobs.broker).
# Checks the owner's caps, then writes the record, indexes it and pushes its message in one step.
# Returns {'ok', created_at, position}, {'open_full' | 'waiting_full', count}, or {'exists'}
# when a job with this id was already written (a batch line submitted again).
SUBMIT = (
    NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local now, ttl = server_now(), tonumber(ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - ttl)
local open = redis.call('ZCARD', KEYS[7])
if open >= tonumber(ARGV[10]) then return {'open_full', open} end
if ARGV[12] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
  local waiting = redis.call('ZCARD', KEYS[8])
  if waiting >= tonumber(ARGV[11]) then return {'waiting_full', waiting} end
  redis.call('ZADD', KEYS[8], now + tonumber(ARGV[12]), ARGV[1])
  redis.call('EXPIRE', KEYS[8], math.ceil(tonumber(ARGV[12])) + 60)
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'owner', ARGV[2], 'model', ARGV[3], 'status', 'queued',
  'created_at', now, 'priority', ARGV[4], 'attempts', 0, 'request', ARGV[5], 'listed', ARGV[8], 'endpoint', ARGV[6])
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'meta', ARGV[13]) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) * """
    + str(PRIORITY_SCALE)
    + """ + math.floor(now * 1000), ARGV[1])
if ARGV[7] ~= '' then
  local expires = now + tonumber(ARGV[7])
  redis.call('HSET', KEYS[1], 'expires_at', expires)
  redis.call('ZADD', KEYS[3], expires, ARGV[1])
end
if ARGV[8] == '1' then
  redis.call('ZADD', KEYS[4], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - ttl)
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('SET', KEYS[5], ARGV[2], 'EX', ttl)
end
redis.call('ZADD', KEYS[7], now, ARGV[1])
redis.call('EXPIRE', KEYS[7], ttl)
redis.call('HINCRBY', KEYS[6], 'submitted:' .. ARGV[3], 1)
if KEYS[9] then redis.call('LPUSH', KEYS[9], ARGV[14]) end
return {'ok', tostring(now), redis.call('ZRANK', KEYS[2], ARGV[1])}
"""
)

# KEYS: job, events, queue zset, deadlines, stats, open. ARGV: job id, retention, sync retention.
# Returns 1 (ended while queued), 2 (marked; its worker aborts it and writes the end),
# -1 (already ended), 0 (no such job).
CANCEL = (
    _END_QUEUED
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'completed' or status == 'failed' or status == 'cancelled' or status == 'expired' then return -1 end
if status == 'queued' then
  end_queued('cancelled')
  return 1
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', server_now())
return 2
"""
)

# KEYS as CANCEL. ARGV as CANCEL, plus ARGV[4] = the new status; ARGV[5] = 1 to end
# it only if it is overdue by Redis's clock. Returns 1 if it ended the job.
END_QUEUED = (
    _END_QUEUED
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
if ARGV[5] == '1' then
  local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '')
  if not expires or expires >= server_now() then return 0 end
end
end_queued(ARGV[4])
return 1
"""
)

# KEYS: job, events, waiting. ARGV: job id, stream grace (seconds).
# The synchronous caller's read of its ended job: hands back the whole record,
# then keeps only what billing and audit need (keep_audit) and frees its wait
# slot. A streamed job's tokens go after a short grace, so another reader of
# the same stream still gets its end; a job nobody streamed has only its end
# event, which goes at once (a Redis stream costs ~4.7 KiB).
COLLECT = (
    _KEEP_AUDIT
    + """
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'ended') ~= '1' or redis.call('HGET', KEYS[1], 'listed') == '1' then
  return redis.call('HGETALL', KEYS[1])
end
local streamed = string.find(redis.call('HGET', KEYS[1], 'request') or '', '"stream":true', 1, true)
if streamed then redis.call('EXPIRE', KEYS[2], ARGV[2]) else redis.call('DEL', KEYS[2]) end
return keep_audit(KEYS[1])
"""
)

# KEYS: job, events, owner jobs, tombstone. ARGV: job id.
# Deletes an ended job and every trace of it its owner could reach (record, events, listing,
# tombstone); billing already happened at its end. Returns 1, or 0 if it has not ended.
DELETE = """
if redis.call('HGET', KEYS[1], 'ended') ~= '1' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: waiting. ARGV: job id. A caller that stops waiting without collecting (timeout, disconnect).
RELEASE = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
