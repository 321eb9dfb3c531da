"""The job service's atomic steps on the workers' and the reconciler's side (Lua).

An attempt is one worker's run of a job. Its number (the record's
`attempts`, counted at claim) fences everything it writes: a delta or an end
from an attempt that was superseded (its worker was presumed dead and the job
re-queued) is refused, so two attempts never interleave in one stream and
only the winner is billed. See tasks.jobs.scripts for the shared pieces.
"""

from __future__ import annotations

from tasks.jobs.scripts import _CLOSE, NOW, PRIORITY_SCALE

# KEYS: job, queue zset, deadlines, leases. ARGV: job id, worker name.
# Returns {'start', attempt, request, owner} when this caller should run the job;
# {'overdue', owner} when it is past its `expires_in` (the caller ends it);
# else {status}: 'missing' or the status it already has.
CLAIM = (
    NOW
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'queued' then return {status} end
local now = server_now()
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '')
if expires and expires < now then return {'overdue', redis.call('HGET', KEYS[1], 'owner')} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', now, 'worker', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
return {'start', attempt, redis.call('HGET', KEYS[1], 'request'), redis.call('HGET', KEYS[1], 'owner')}
"""
)

# KEYS: job, events of each delta in turn. ARGV: attempt, delta json of each in turn.
# Returns one outcome per delta: 1 (appended), 0 (this attempt no longer owns the
# job: stop), 2 (cancelled: not appended). One call carries every delta a worker
# has ready, whichever jobs they belong to (tasks.delta_writer).
APPEND = """
local outcomes = {}
for i = 1, #KEYS, 2 do
  local outcome = 1
  local attempt = ARGV[i]
  if redis.call('HGET', KEYS[i], 'attempts') ~= attempt then
    outcome = 0
  else
    local status = redis.call('HGET', KEYS[i], 'status')
    if status == 'cancelled' then outcome = 2
    elseif status ~= 'in_progress' then outcome = 0
    else redis.call('XADD', KEYS[i + 1], '*', 'type', 'delta', 'data', ARGV[i + 1]) end
  end
  outcomes[#outcomes + 1] = outcome
end
return outcomes
"""

# KEYS: job, events, leases, done zset, stats, usage hash, tpm counter, open, waiting.
# ARGV: attempt, retention, sync retention, job id, prompt tokens, completion tokens,
#       tpm ttl, throughput window, 1 to carry a completed body in the end event to a
#       caller that waits for it (holds a wait slot) and does not stream it, else 0;
#       stream grace; then the record's fields to write, name and value in turn (status,
#       and result, error, usage as JSON). The values go in as sent: no JSON document
#       wraps them, so a 2 MB embeddings body is neither escaped nor decoded again.
#       A carried body frees its caller's wait slot and trims the record here: the
#       caller has its answer once it reads the event.
# Writes the end only for the attempt that holds the job, bills it once, wakes its
# waiters; returns the final status, or 0 when this attempt lost.
FINISH = (
    NOW
    + _CLOSE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
if status ~= 'in_progress' and status ~= 'cancelled' then return 0 end
if redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
local now = server_now()
local fields = {}
for i = 11, #ARGV, 2 do fields[ARGV[i]] = ARGV[i + 1] end
if status == 'cancelled' then
  -- Cancelled while it ran: it stays cancelled and is billed for what was generated.
  if fields['usage'] then redis.call('HSET', KEYS[1], 'usage', fields['usage']) end
else
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
  redis.call('HSET', KEYS[1], 'completed_at', now)
end
local final = redis.call('HGET', KEYS[1], 'status')
local model = redis.call('HGET', KEYS[1], 'model')
local prompt, completion = tonumber(ARGV[5]), tonumber(ARGV[6])
if prompt + completion > 0 and redis.call('HSETNX', KEYS[1], 'billed', '1') == 1 then
  redis.call('HINCRBY', KEYS[6], model .. ':prompt', prompt)
  redis.call('HINCRBY', KEYS[6], model .. ':completion', completion)
  redis.call('HINCRBY', KEYS[6], model .. ':requests', 1)
  redis.call('INCRBY', KEYS[7], prompt + completion)
  redis.call('EXPIRE', KEYS[7], ARGV[7])
  redis.call('HINCRBY', KEYS[5], 'tokens:' .. model .. ':prompt', prompt)
  redis.call('HINCRBY', KEYS[5], 'tokens:' .. model .. ':completion', completion)
end
if final == 'completed' then
  redis.call('ZADD', KEYS[4], now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[8]))
end
redis.call('ZREM', KEYS[3], ARGV[4])
local body = nil
if ARGV[9] == '1' and final == 'completed' and redis.call('ZSCORE', KEYS[9], ARGV[4]) then body = fields['result'] end
if close(final, ARGV[2], ARGV[3], KEYS[8], KEYS[5], ARGV[4], body, ARGV[10]) then
  redis.call('ZREM', KEYS[9], ARGV[4])
end
return final
"""
)

# KEYS: leases. ARGV: job ids. Renews existing leases only: one the reconciler
# took away stays away.
RENEW = (
    NOW
    + """
local now, args = server_now(), {}
for i = 1, #ARGV do
  args[#args + 1] = now
  args[#args + 1] = ARGV[i]
end
if #args == 0 then return 0 end
return redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(args))
"""
)

# KEYS: leases, then each job. ARGV: each job id. Leases the jobs still queued
# (received, not started); a hold written late, after its job started or ended,
# leaves the claim's lease or the end alone. Returns how many it leased.
HOLD = (
    NOW
    + """
local now, held = server_now(), 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'queued' then
    redis.call('ZADD', KEYS[1], now, ARGV[i - 1])
    held = held + 1
  end
end
return held
"""
)

# KEYS: leases. ARGV: older than (seconds), at most this many.
# Returns {cut-off, job ids...}: leases last renewed before the cut-off, by Redis's clock.
STALE = (
    NOW
    + """
local cutoff = server_now() - tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
table.insert(ids, 1, tostring(cutoff))
return ids
"""
)

# KEYS: job, events, queue zset, leases, reconciler lock, open, stats.
# ARGV: job id, stale before, lock token, max attempts, error json, retention, sync retention.
# Puts a dead worker's job back at the tail of its priority (the caller re-sends its
# message), unless its lease was renewed since it was seen stale or this round lost
# its lock. A job cancelled while its worker died gets its end here, since no worker
# will write it; so does a job whose workers died `max attempts` times (a poison job).
# Returns 1 re-queued, 2 ended cancelled, 3 failed for good, 0 left alone, -1 lock lost.
REQUEUE = (
    NOW
    + _CLOSE
    + f"""
if redis.call('GET', KEYS[5]) ~= ARGV[3] then return -1 end
local lease = redis.call('ZSCORE', KEYS[4], ARGV[1])
if lease and tonumber(lease) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[4], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
if status == 'cancelled' then
  close('cancelled', ARGV[6], ARGV[7], KEYS[6], KEYS[7], ARGV[1])
  return 2
end
local handbacks = tonumber(redis.call('HGET', KEYS[1], 'handbacks') or '0')
if status == 'in_progress' and tonumber(redis.call('HGET', KEYS[1], 'attempts')) - handbacks >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[5], 'error_status', '500',
    'completed_at', server_now())
  close('failed', ARGV[6], ARGV[7], KEYS[6], KEYS[7], ARGV[1])
  return 3
end
if status ~= 'queued' and status ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
local priority = tonumber(redis.call('HGET', KEYS[1], 'priority'))
redis.call('ZADD', KEYS[3], priority * {PRIORITY_SCALE} + math.floor(server_now() * 1000), ARGV[1])
return 1
"""
)

# KEYS: job, queue zset, leases. ARGV: job id, attempt.
# A stopping worker gives back a job it is running (graceful drain): queued again at the
# tail of its priority, its lease dropped, at once instead of after the lease timeout. Fenced
# by the attempt: the stopping attempt's later writes are refused. Counted in `handbacks`,
# so a job drained off stopping workers is not taken for one that kills them.
# Returns 1 handed back (the caller re-sends its message), 0 left alone (ended, cancelled:
# its running attempt writes the end, or already superseded).
HAND_BACK = (
    NOW
    + f"""
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end
if redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HINCRBY', KEYS[1], 'handbacks', 1)
redis.call('ZREM', KEYS[3], ARGV[1])
local priority = tonumber(redis.call('HGET', KEYS[1], 'priority'))
redis.call('ZADD', KEYS[2], priority * {PRIORITY_SCALE} + math.floor(server_now() * 1000), ARGV[1])
return 1
"""
)

# KEYS: job, leases. ARGV: job id.
# A stopping worker lets go of a job it received and never started: its lease goes, so the
# job counts as waiting again at once (the caller re-sends its message). Left alone (0) once
# anyone started it, or when it holds no lease (already let go).
UNHOLD = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""
