-- wrk script of bench/webhook.py: every request posts a distinct, pre-signed signal.
--
-- WEBHOOK_POOL names a file of "x-signature<TAB>body" lines (HMAC-SHA256 is computed by the
-- Python side: wrk's Lua has none). Thread n of WEBHOOK_THREADS takes every n-th line, so no
-- two requests of a run share a body; a thread that runs out of lines starts over and counts
-- the reuses in `exhausted` (its answers are then DUPLICATE, counted as not ACCEPTED).
-- done() prints one line "WRK_RESULT {json}" that bench/webhook.py parses.

local threads = {}
local next_tid = 1

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("WEBHOOK_THREADS"))
  signatures, bodies = {}, {}
  local line_no = 0
  for line in io.lines(os.getenv("WEBHOOK_POOL")) do
    if line_no % nthreads == tid - 1 then
      local tab = line:find("\t", 1, true)
      signatures[#signatures + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    line_no = line_no + 1
  end
  position, accepted, not_accepted, non_2xx, exhausted = 0, 0, 0, 0, 0
end

function request()
  position = position + 1
  if position > #bodies then
    exhausted = exhausted + 1
  end
  local k = (position - 1) % #bodies + 1
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json",
                                       ["X-Signature"] = signatures[k]}, bodies[k])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  elseif body:find('"status":"ACCEPTED"', 1, true) then
    accepted = accepted + 1
  else
    not_accepted = not_accepted + 1
  end
end

function done(summary, latency, requests)
  local totals = {accepted = 0, not_accepted = 0, non_2xx = 0, exhausted = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "accepted": %d, "not_accepted": %d, ' ..
    '"non_2xx": %d, "exhausted": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, ' ..
    '"mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, totals.accepted, totals.not_accepted, totals.non_2xx,
    totals.exhausted, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
