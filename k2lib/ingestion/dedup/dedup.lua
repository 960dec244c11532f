-- One deduplication batch, atomically (the steps are described in store.py).
--
-- KEYS[1]  hash: packed Kafka partition -> packed highest offset deduplicated
-- ARGV[1]  key prefix               ARGV[2] live windows, "w\n" each, newest first
-- ARGV[3]  TTL seconds              ARGV[4] bitmap suffixes, "namehex:bucket\n" each
-- ARGV[5]  spans, <i4 suffix index, <i4 first byte, <i4 byte count> each
-- ARGV[6]  the spans' mask bytes, concatenated
-- ARGV[7]  probes, <i4 suffix index, <i4 bit offset, <i8 partition, <i8 offset> each
-- ARGV[8]  duplicates decided by the client, <i8 partition, <i8 offset> each
-- ARGV[9]  the batch's partitions, <i8 partition, lowest offset, highest offset> each
--
-- Replies {0, found (one byte per probe)}, {1, <i8 partition + high water ...>, <i8 partition
-- + offset of past duplicates ...>} or {2, <i4 span index ...>, the spans' stored bytes}.
-- Only {0, ...} writes; every read happens before the first write.

local CHUNK = 4000
local prefix = ARGV[1]
local windows = {}
for w in string.gmatch(ARGV[2], '[^\n]+') do windows[#windows + 1] = prefix .. 'g' .. w .. ':' end
local current = windows[1]
local ttl = tonumber(ARGV[3])
local suffixes = {}
for s in string.gmatch(ARGV[4], '[^\n]+') do suffixes[#suffixes + 1] = s end
local spans, masks, probes, decided, parts = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local function dropped_key(partition)
  return prefix .. 'dropped:' .. string.format('%d', partition)
end

-- 1. Replays.
local np = #parts / 24
local pfield, plo, phi = {}, {}, {}
for i = 1, np do
  local at = (i - 1) * 24 + 1
  pfield[i] = string.sub(parts, at, at + 7)
  local _, lo, hi = struct.unpack('<i8i8i8', parts, at)
  plo[i], phi[i] = lo, hi
end
if np > 0 then
  local hws = redis.call('HMGET', KEYS[1], unpack(pfield))
  local marks, past = {}, {}
  for i = 1, np do
    if hws[i] then
      local hw = struct.unpack('<i8', hws[i])
      if hw >= plo[i] then
        marks[#marks + 1] = pfield[i] .. hws[i]
        local p = struct.unpack('<i8', pfield[i])
        for _, off in ipairs(redis.call('ZRANGEBYSCORE', dropped_key(p), plo[i], hw)) do
          past[#past + 1] = pfield[i] .. off
        end
      end
    end
  end
  if #marks > 0 then return {1, table.concat(marks), table.concat(past)} end
end

-- 2. Read the spans; a bit already set means another consumer recorded that key.
local nspans = #spans / 12
local span_key, span_first, span_len, span_at, olds = {}, {}, {}, {}, {}
local over_idx, over_old = {}, {}
local at = 1
for i = 1, nspans do
  local sidx, first, len = struct.unpack('<i4i4i4', spans, (i - 1) * 12 + 1)
  local key = current .. suffixes[sidx + 1]
  local old = redis.call('GETRANGE', key, first, first + len - 1)
  span_key[i], span_first[i], span_len[i], span_at[i], olds[i] = key, first, len, at, old
  for j = 1, #old do
    if bit.band(string.byte(old, j), string.byte(masks, at + j - 1)) ~= 0 then
      over_idx[#over_idx + 1] = struct.pack('<i4', i - 1)
      over_old[#over_old + 1] = old .. string.rep('\0', len - #old)
      break
    end
  end
  at = at + len
end
if #over_idx > 0 then return {2, table.concat(over_idx), table.concat(over_old)} end

-- 3. Probes: a Bloom "maybe" is a duplicate only if some live window holds the key.
local nprobes = #probes / 24
local found, found_bytes = {}, {}
for i = 1, nprobes do
  local sidx, offset = struct.unpack('<i4i4', probes, (i - 1) * 24 + 1)
  local hit = false
  for w = 1, #windows do
    if redis.call('GETBIT', windows[w] .. suffixes[sidx + 1], offset) == 1 then
      hit = true
      break
    end
  end
  found[i] = hit
  found_bytes[i] = hit and '\1' or '\0'
end

-- 4. Write.
local touched = {}
for i = 1, nspans do
  local old, len, start = olds[i], span_len[i], span_at[i]
  local new = string.sub(masks, start, start + len - 1)
  if #old > 0 then
    local merged = {}
    for j = 1, #old do
      merged[j] = string.char(bit.bor(string.byte(old, j), string.byte(masks, start + j - 1)))
    end
    new = table.concat(merged) .. string.sub(new, #old + 1)
  end
  redis.call('SETRANGE', span_key[i], span_first[i], new)
  touched[span_key[i]] = true
end
local dup_by_partition = {}
local function remember(partition, offset)
  if partition < 0 or offset < 0 then return end
  local list = dup_by_partition[partition]
  if not list then
    list = {}
    dup_by_partition[partition] = list
  end
  list[#list + 1] = offset
  list[#list + 1] = struct.pack('<i8', offset)
end
for i = 1, nprobes do
  local sidx, offset, partition, kafka_offset = struct.unpack('<i4i4i8i8', probes, (i - 1) * 24 + 1)
  if found[i] then
    remember(partition, kafka_offset)
  else
    local key = current .. suffixes[sidx + 1]
    redis.call('SETBIT', key, offset, 1)
    touched[key] = true
  end
end
for key in pairs(touched) do redis.call('EXPIRE', key, ttl) end
for i = 1, #decided / 16 do
  remember(struct.unpack('<i8i8', decided, (i - 1) * 16 + 1))
end
for partition, list in pairs(dup_by_partition) do
  local key = dropped_key(partition)
  for c = 1, #list, CHUNK do
    redis.call('ZADD', key, unpack(list, c, math.min(c + CHUNK - 1, #list)))
  end
  redis.call('EXPIRE', key, ttl)
end
if np > 0 then
  local hw = {}
  for i = 1, np do
    hw[#hw + 1] = pfield[i]
    hw[#hw + 1] = struct.pack('<i8', phi[i])
  end
  redis.call('HSET', KEYS[1], unpack(hw))
end
return {0, table.concat(found_bytes)}
