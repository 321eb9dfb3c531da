"""The job service's atomic steps, as Lua run inside Redis.

Every state change is a compare-and-set: a job starts only from `queued`,
and only the attempt that started it may finish it. That makes redelivery
harmless (a message delivered twice, a job re-queued while its first worker
was merely slow): it runs or writes a result at most once. Billing happens
inside the same step as the winning attempt's result, so a superseded
attempt can never be the one billed. Key names arrive as KEYS, built by
tasks.keyspace; only hash fields are spelled here.
"""

from __future__ import annotations

#: Priorities follow the broker: 0 runs first, 9 last. Score = priority * SCALE + milliseconds.
PRIORITY_SCALE = 10**13

# Ends a job that never started (cancelled or expired while queued): no worker
# will write its end, so wake its waiters here.
# KEYS: job, events, queue zset, deadlines, stats. ARGV: now, retention, job id, new status.
_END_QUEUED = """
local function end_queued(status)
  redis.call('HSET', KEYS[1], 'status', status, 'completed_at', ARGV[1])
  redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', status)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'ended:' .. redis.call('HGET', KEYS[1], 'model') .. ':' .. status, 1)
end
"""

# KEYS: job, events, queue zset, deadlines, stats, leases. ARGV: now, retention, job id.
# Returns {'start', attempt, request, owner} when this caller should run the job,
# else {status}: 'missing', 'expired' (ended here), or the status it already has.
CLAIM = (
    _END_QUEUED
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'queued' then return {status} end
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '')
if expires and expires < tonumber(ARGV[1]) then
  end_queued('expired')
  return {'expired'}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZADD', KEYS[6], ARGV[1], ARGV[3])
return {'start', attempt, redis.call('HGET', KEYS[1], 'request'), redis.call('HGET', KEYS[1], 'owner')}
"""
)

# KEYS: job, events, queue zset, deadlines, stats. ARGV: now, retention, job id.
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
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[1])
return 2
"""
)

# Same KEYS and ARGV as CANCEL, plus ARGV[4] = the new status. Returns 1 if it ended the job.
END_QUEUED = (
    _END_QUEUED
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
end_queued(ARGV[4])
return 1
"""
)

# KEYS: job, events, leases, done zset, stats, usage hash, tpm counter.
# ARGV: attempt, now, retention, fields (json), job id, prompt tokens, completion tokens,
#       tpm ttl, throughput window.
# Writes the end only for the attempt that holds the job, bills it once, wakes its
# waiters; returns the final status, or 0 when this attempt lost.
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
if status ~= 'in_progress' and status ~= 'cancelled' then return 0 end
if status == 'cancelled' and redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 0 end
local fields = cjson.decode(ARGV[4])
if status == 'cancelled' then
  -- Cancelled while it ran: it stays cancelled and is billed for what was generated.
  if fields['usage'] then redis.call('HSET', KEYS[1], 'usage', fields['usage']) end
else
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
end
redis.call('HSET', KEYS[1], 'ended', '1')
local final = redis.call('HGET', KEYS[1], 'status')
local model = redis.call('HGET', KEYS[1], 'model')
local prompt, completion = tonumber(ARGV[6]), tonumber(ARGV[7])
if prompt + completion > 0 and redis.call('HSETNX', KEYS[1], 'billed', '1') == 1 then
  redis.call('HINCRBY', KEYS[6], model .. ':prompt', prompt)
  redis.call('HINCRBY', KEYS[6], model .. ':completion', completion)
  redis.call('HINCRBY', KEYS[6], model .. ':requests', 1)
  redis.call('INCRBY', KEYS[7], prompt + completion)
  redis.call('EXPIRE', KEYS[7], ARGV[8])
  redis.call('HINCRBY', KEYS[5], 'tokens:' .. model .. ':prompt', prompt)
  redis.call('HINCRBY', KEYS[5], 'tokens:' .. model .. ':completion', completion)
end
redis.call('HINCRBY', KEYS[5], 'ended:' .. model .. ':' .. final, 1)
if final == 'completed' then
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[9]))
end
redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', final)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[5])
return final
"""

# KEYS: job, queue zset, leases, events. ARGV: job id, now, stale-before, retention.
# Puts a dead worker's job back at the tail of its priority (the caller re-sends its
# message), unless its lease was renewed since it was seen stale. A job cancelled
# while its worker died gets its end here, since no worker will write it.
# Returns 1 when re-queued, 2 when it ended a cancelled job, 0 otherwise.
REQUEUE = f"""
local lease = redis.call('ZSCORE', KEYS[3], ARGV[1])
if lease and tonumber(lease) > tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' and redis.call('HEXISTS', KEYS[1], 'ended') == 0 then
  redis.call('HSET', KEYS[1], 'ended', '1')
  redis.call('XADD', KEYS[4], '*', 'type', 'end', 'status', 'cancelled')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
  return 2
end
if status ~= 'queued' and status ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
local priority = tonumber(redis.call('HGET', KEYS[1], 'priority'))
redis.call('ZADD', KEYS[2], priority * {PRIORITY_SCALE} + math.floor(tonumber(ARGV[2]) * 1000), ARGV[1])
return 1
"""
