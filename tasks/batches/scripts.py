"""A batch's atomic steps, as Lua run inside Redis: every one a compare-and-set on its record.

Two runners working on one batch at once (a lock that expired under a slow
round), or one repeating a step after a crash, can only find a step already
done: a feed commits only over the count it read, a harvest only lines still
in flight, an end only from the status it expected. Times come from Redis's
clock (tasks.jobs.scripts.NOW).
"""

from __future__ import annotations

from tasks.jobs.scripts import NOW

# KEYS: batch, owner batches, active. ARGV: id, owner, endpoint, input file id, window label,
# window seconds, metadata json. Returns created_at.
CREATE = (
    NOW
    + """
local now = server_now()
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'owner', ARGV[2], 'endpoint', ARGV[3], 'input_file_id', ARGV[4],
  'completion_window', ARGV[5], 'metadata', ARGV[7], 'status', 'validating', 'created_at', now,
  'expires_at', now + tonumber(ARGV[6]), 'heartbeat', now, 'total', 0, 'completed', 0, 'failed', 0,
  'prompt_tokens', 0, 'completion_tokens', 0, 'fed', 0, 'fed_offset', 0, 'stop', '')
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return tostring(now)
"""
)

# KEYS: batch. The validating API process is alive.
TOUCH = (
    NOW
    + """
if redis.call('HGET', KEYS[1], 'status') == 'validating' then redis.call('HSET', KEYS[1], 'heartbeat', server_now()) end
"""
)

# KEYS: batch. ARGV: total lines, model. Validation passed: run it (a batch cancelled meanwhile
# stays cancelling; the runner ends it). Returns the status.
START = (
    NOW
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'validating' or status == 'cancelling' then
  redis.call('HSET', KEYS[1], 'total', ARGV[1], 'model', ARGV[2], 'in_progress_at', server_now())
  if status == 'validating' then redis.call('HSET', KEYS[1], 'status', 'in_progress') end
  return redis.call('HGET', KEYS[1], 'status')
end
return status or ''
"""
)

# KEYS: batch, active. ARGV: errors json, total lines, stale after ('' = fail it now).
# Validation failed, or (with `stale after`) its API process died: no heartbeat for that many seconds.
FAIL = (
    NOW
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'validating' and status ~= 'cancelling' then return 0 end
if redis.call('HGET', KEYS[1], 'in_progress_at') then return 0 end
if ARGV[3] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'heartbeat')) > server_now() - tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'failed_at', server_now(), 'errors', ARGV[1], 'total', ARGV[2])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
return 1
"""
)

# KEYS: batch. Returns the status after the call.
CANCEL = (
    NOW
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'validating' or status == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelling_at', server_now())
  return 'cancelling'
end
return status or ''
"""
)

# KEYS: batch. Past its completion window: stop feeding, end as expired. Returns 1 if it stopped it now.
EXPIRE = (
    NOW
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' or redis.call('HGET', KEYS[1], 'stop') ~= '' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) > server_now() then return 0 end
redis.call('HSET', KEYS[1], 'stop', 'expired')
return 1
"""
)

# KEYS: batch, inflight. ARGV: fed seen, fed now, offset now, then index, custom_id pairs.
FEED = """
if redis.call('HGET', KEYS[1], 'fed') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'fed', ARGV[2], 'fed_offset', ARGV[3])
if #ARGV > 3 then redis.call('HSET', KEYS[2], unpack(ARGV, 4)) end
return 1
"""

# KEYS: batch, inflight, chunks. ARGV: chunk token, completed, failed, prompt tokens, completion tokens,
# then line indexes. Counts the lines once: only if every one is still in flight.
HARVEST = """
for i = 6, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then return 0 end
end
redis.call('HDEL', KEYS[2], unpack(ARGV, 6))
redis.call('HINCRBY', KEYS[1], 'completed', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[5])
redis.call('RPUSH', KEYS[3], ARGV[1])
return 1
"""

# KEYS: batch, inflight. Every line fed and harvested: write the files. Returns the status.
FINALIZING = (
    NOW
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'in_progress' and redis.call('HGET', KEYS[1], 'stop') == ''
  and redis.call('HGET', KEYS[1], 'fed') == redis.call('HGET', KEYS[1], 'total')
  and redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', server_now())
  return 'finalizing'
end
return status or ''
"""
)

# KEYS: batch, active, inflight, chunks. ARGV: final status, status expected, output file id, error file id,
# failed lines to add (never fed: cancelled or expired). The files are written: end the batch.
END = (
    NOW
    + """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_at', server_now(), 'output_file_id', ARGV[3],
  'error_file_id', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[5])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
redis.call('DEL', KEYS[3], KEYS[4])
return 1
"""
)
