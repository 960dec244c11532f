-- Classify one batch, atomically: the Lua twin of _reference.py (keep the two in step).
--
-- KEYS[1]   set of state keys that have open gaps (for `k2 gaps`)
-- ARGV[1]   runs, <i8 x5 each: first seq, last seq, first exch_ts, last exch_ts, session
--           (-1: records seen first, the script decides; >= 0: rows the table holds, replayed
--           in the session they were stored in)
-- ARGV[2]   runs per key, <i4 each, in ARGV[5] order
-- ARGV[3]   config, <i8 x4: reset_jump, reset_quiet_us, session_length_us, session_offset_us
-- ARGV[4]   prefix of the state keys; ARGV[5] the batch's keys, "len:exchange:symbol\n" each
--           (scripts.name_field). Their state strings, ARGV[4] .. name, hold <i8 first, last,
--           last_ts, session, h, the h sessions before it (oldest first), a zero word if
--           5 + h is odd, then gap pairs. A string of the layout before sessions
--           (24 + 16k bytes; every other is a multiple of 16) has session 0.
--           (Names travel in one string: per-key arguments cost more to send than the
--           work.) Every key here shares KEYS[1]'s hash tag: one cluster slot.
--
-- Sessions: 0 first; a RESET begins session max(its exch_ts, session + 1). The reset rule
-- leaves a quiet period before a session, so a run timed more than half of it before the
-- session began is a late record of an earlier one: of the newest earlier session that
-- began before it (the last MAX_HISTORY are kept; before them, session 0). Those sessions
-- are no longer tracked: its records are labelled DUPLICATE in theirs, and the state stays.
--
-- Returns {segments (<i4 length, i1 label ...), new gaps (<i4 key, <i8 first, last ...),
-- abandoned seqs, the session of each run in run order (<i4 runs, <i8 session ...: equal
-- neighbours merged, so a batch without resets is one pair)}. Numbers are Lua doubles:
-- exact below 2^53, and never tostring()'d. All reads happen before the first write.

local IN_ORDER, DUPLICATE, GAP, LATE_FILL, OUT_OF_ORDER, RESET = 0, 1, 2, 3, 4, 5
local CHUNK = 4000 -- unpack() stays well under Lua's C stack limit
local MAX_HISTORY = 15
local jump, quiet, slen, soff = struct.unpack('<i8i8i8i8', ARGV[3])
local half = math.max(1, math.floor(quiet / 2))

-- 1. Read every key's state.
local names = {}
for name in string.gmatch(ARGV[5], '[^\n]+') do names[#names + 1] = ARGV[4] .. name end
local nkeys = #names
local states = {}
for c = 1, nkeys, CHUNK do
  local got = redis.call('MGET', unpack(names, c, math.min(c + CHUNK - 1, nkeys)))
  for i = 1, #got do states[#states + 1] = got[i] end
end

local function session(ts)
  local x = ts - soff
  local s = math.floor(x / slen)
  if s * slen > x then s = s - 1 elseif (s + 1) * slen <= x then s = s + 1 end
  return s
end

local seg_len, seg_lab = {}, {}
local function segment(n, label)
  local k = #seg_len + 1
  seg_len[k], seg_lab[k] = n, label
  return k
end

local new_gaps, abandoned = {}, 0
local sess_out, sess_n, sess_v = {}, 0, -1 -- runs' sessions, run-length encoded
local function run_session(v)
  if v == sess_v then
    sess_n = sess_n + 1
  else
    if sess_n > 0 then sess_out[#sess_out + 1] = struct.pack('<i4i8', sess_n, sess_v) end
    sess_n, sess_v = 1, v
  end
end
local writes, opened, closed = {}, {}, {}
local runs, rpk, rpos = ARGV[1], ARGV[2], 1

-- 2. Classify, key by key, run by run.
for ki = 1, nkeys do
  local nr = struct.unpack('<i4', rpk, (ki - 1) * 4 + 1)
  local st = states[ki]
  local have, first, last, ts, sess = false, 0, 0, 0, 0
  local past = {}
  local glo, ghi, gorg = {}, {}, {}
  if st then
    have = true
    local head = 24
    first, last, ts = struct.unpack('<i8i8i8', st)
    if (#st - 24) % 16 ~= 0 then
      local h
      sess, h = struct.unpack('<i8i8', st, 25)
      for j = 1, h do past[j] = struct.unpack('<i8', st, 41 + (j - 1) * 8) end
      head = (5 + h + (5 + h) % 2) * 8
    end
    for g = 1, (#st - head) / 16 do
      glo[g], ghi[g] = struct.unpack('<i8i8', st, head + 1 + (g - 1) * 16)
      gorg[g] = 0
    end
  end
  local had_gaps = #glo > 0
  local openers, alive = {}, {}

  local function fill(lo, hi)
    local i = 1
    while i <= #glo and ghi[i] < lo do i = i + 1 end
    local pos = lo
    while pos <= hi do
      if i <= #glo and glo[i] <= hi then
        if glo[i] > pos then
          segment(glo[i] - pos, DUPLICATE)
          pos = glo[i]
        end
        local g_lo, g_hi, origin = glo[i], ghi[i], gorg[i]
        local stop = math.min(hi, g_hi)
        segment(stop - pos + 1, origin == 0 and LATE_FILL or OUT_OF_ORDER)
        if pos == g_lo and stop == g_hi then
          table.remove(glo, i); table.remove(ghi, i); table.remove(gorg, i)
        elseif pos == g_lo then
          glo[i] = stop + 1
        elseif stop == g_hi then
          ghi[i] = pos - 1
          i = i + 1
        else
          ghi[i] = pos - 1
          table.insert(glo, i + 1, stop + 1); table.insert(ghi, i + 1, g_hi)
          table.insert(gorg, i + 1, origin)
          i = i + 1
        end
        pos = stop + 1
      else
        segment(hi - pos + 1, DUPLICATE)
        pos = hi + 1
      end
    end
  end

  for r = 1, nr do
    local a, b, ta, tb, given = struct.unpack('<i8i8i8i8i8', runs, rpos)
    rpos = rpos + 40
    local reset, older, mine = false, false, sess
    if have and given >= 0 then
      reset, older = given > sess, given < sess
    elseif have and sess > 0 and ta < sess - half then
      older, given = true, 0
      for j = #past, 1, -1 do
        if ta >= past[j] - half then given = past[j]; break end
      end
    elseif have then
      reset = (last - a > jump and ta - ts > quiet)
        or (slen > 0 and a <= last and session(ta) > session(ts))
    end
    if not have then
      have, first, last, ts = true, a, b, tb
      if given >= 0 then sess = given end
      mine = sess
      segment(b - a + 1, IN_ORDER)
    elseif older then
      mine = given
      segment(b - a + 1, DUPLICATE) -- rows of a session already over: the state stays
    elseif reset then
      past[#past + 1] = sess
      if #past > MAX_HISTORY then table.remove(past, 1) end
      if given >= 0 then sess = given else sess = math.max(ta, sess + 1) end
      mine = sess
      for g = 1, #glo do
        abandoned = abandoned + ghi[g] - glo[g] + 1
        if gorg[g] ~= 0 then
          new_gaps[#new_gaps + 1] = struct.pack('<i4i8i8', ki - 1, glo[g], ghi[g])
          alive[gorg[g]] = true
        end
      end
      glo, ghi, gorg = {}, {}, {}
      first, last, ts = a, b, tb
      segment(1, RESET)
      if b > a then segment(b - a, IN_ORDER) end
    else
      local cur = a
      if cur < first then
        local hi = math.min(b, first - 1)
        segment(hi - cur + 1, OUT_OF_ORDER)
        if hi < first - 1 then
          table.insert(glo, 1, hi + 1); table.insert(ghi, 1, first - 1); table.insert(gorg, 1, -r)
        end
        first = a
        cur = hi + 1
      end
      if cur <= b and cur <= last then
        local hi = math.min(b, last)
        fill(cur, hi)
        cur = hi + 1
      end
      if cur <= b then
        if cur > last + 1 then
          local g = #glo + 1
          glo[g], ghi[g], gorg[g] = last + 1, cur - 1, r
          openers[r] = segment(1, GAP)
          if b > cur then segment(b - cur, IN_ORDER) end
        else
          segment(b - cur + 1, IN_ORDER)
        end
        last, ts = b, tb
      end
    end
    run_session(mine)
  end

  local packed
  if #past == 0 then
    packed = {struct.pack('<i8i8i8i8i8i8', first, last, ts, sess, 0, 0)}
  else
    packed = {struct.pack('<i8i8i8i8i8', first, last, ts, sess, #past)}
    for j = 1, #past do packed[#packed + 1] = struct.pack('<i8', past[j]) end
    if (5 + #past) % 2 == 1 then packed[#packed + 1] = struct.pack('<i8', 0) end
  end
  for g = 1, #glo do
    if gorg[g] ~= 0 then
      new_gaps[#new_gaps + 1] = struct.pack('<i4i8i8', ki - 1, glo[g], ghi[g])
      alive[gorg[g]] = true
    end
    packed[#packed + 1] = struct.pack('<i8i8', glo[g], ghi[g])
  end
  for r, index in pairs(openers) do
    if not alive[r] then seg_lab[index] = IN_ORDER end
  end
  writes[#writes + 1] = names[ki]
  writes[#writes + 1] = table.concat(packed)
  if #glo > 0 and not had_gaps then opened[#opened + 1] = names[ki] end
  if #glo == 0 and had_gaps then closed[#closed + 1] = names[ki] end
end

-- 3. Write: states and the open-gap index.
for c = 1, #writes, CHUNK do
  redis.call('MSET', unpack(writes, c, math.min(c + CHUNK - 1, #writes)))
end
for c = 1, #opened, CHUNK do
  redis.call('SADD', KEYS[1], unpack(opened, c, math.min(c + CHUNK - 1, #opened)))
end
for c = 1, #closed, CHUNK do
  redis.call('SREM', KEYS[1], unpack(closed, c, math.min(c + CHUNK - 1, #closed)))
end

-- 4. Segments, merged where neighbours share a label (an in-order batch is one segment).
local out, run_len, run_lab = {}, 0, -1
for k = 1, #seg_len do
  if seg_lab[k] == run_lab then
    run_len = run_len + seg_len[k]
  else
    if run_len > 0 then out[#out + 1] = struct.pack('<i4b', run_len, run_lab) end
    run_len, run_lab = seg_len[k], seg_lab[k]
  end
end
if run_len > 0 then out[#out + 1] = struct.pack('<i4b', run_len, run_lab) end
if sess_n > 0 then sess_out[#sess_out + 1] = struct.pack('<i4i8', sess_n, sess_v) end
return {table.concat(out), table.concat(new_gaps), abandoned, table.concat(sess_out)}
