-- One deduplication batch, atomically (the steps are described in store.py).
--
-- Each window is one hash, `{T}g{window}`: field <u8 name hash, <u8 bucket; value the
-- bitmap (one bit per seq, MSB first, 512 bytes at most). A batch reads the fields it touches
-- with one HMGET and writes them back with one HSET, whatever the number of symbols.
-- Every key shares the tagged prefix T's hash tag: one Redis Cluster slot.
--
-- KEYS[1]  hash: packed Kafka partition -> the offsets already deduplicated, as ranges
-- KEYS[2..] the live windows' hashes, newest (the one written) first
-- ARGV[1]  tagged key prefix T (the `dropped` sets, T .. 'dropped:' .. partition)
-- ARGV[2]  TTL seconds              ARGV[3] bitmap fields, 16 bytes each
-- ARGV[4]  spans, <i4 field index, <i4 first byte, <i4 byte count> each, sorted by field
-- ARGV[5]  the spans' mask bytes, concatenated
-- ARGV[6]  probes, <i4 field index, <i4 bit offset, <i8 partition, <i8 offset> each
-- ARGV[7]  duplicates decided by the client, <i8 partition, <i8 offset> each
-- ARGV[8]  runs of consecutive Kafka offsets, <i8 partition, first, last offset> each
-- ARGV[9]  mode: 'filter' (all steps), 'probe' (step 3 only, no write) or 'record' (spans
--          only, written even where bits are set already: the reply counts those keys)
--
-- Replies {0, found (one byte per probe), keys already set (record)}, {1, <i8 partition, first, last offset seen before
-- ...>, <i8 partition, offset of the past duplicates among them ...>} or {2, <i4 span index
-- ...>, the spans' stored bytes}.
-- Only {0, ...} writes; every read happens before the first write.

local CHUNK = 4000 -- unpack() stays well under Lua's C stack limit
local FIELD = 16 -- <u8 name hash, <u8 bucket
local prefix = ARGV[1]
local windows = {}
for k = 2, #KEYS do windows[#windows + 1] = KEYS[k] end
local current = windows[1]
local ttl = tonumber(ARGV[2])
local fields, packed = {}, ARGV[3]
for i = 0, #packed / FIELD - 1 do
  fields[i + 1] = string.sub(packed, i * FIELD + 1, i * FIELD + FIELD)
end
local spans, masks, probes, decided, parts = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local mode = ARGV[9]

local function dropped_key(partition)
  return prefix .. 'dropped:' .. string.format('%d', partition)
end

local function has_bit(bitmap, offset)
  local byte = string.byte(bitmap, math.floor(offset / 8) + 1)
  return byte ~= nil and bit.band(byte, bit.rshift(0x80, offset % 8)) ~= 0
end


-- 1. Replays: offsets deduplicated before are decided as they were then.
local ofields, oranges, obatch = ledger_read(KEYS[1], parts)
local replayed = ledger_overlaps(ofields, oranges, obatch)
if #replayed > 0 then
  local past = {}
  for _, range in ipairs(replayed) do
    local p, lo, hi = struct.unpack('<i8i8i8', range)
    for _, off in ipairs(redis.call('ZRANGEBYSCORE', dropped_key(p), lo, hi)) do
      past[#past + 1] = string.sub(range, 1, 8) .. off
    end
  end
  return {1, table.concat(replayed), table.concat(past)}
end

-- 2. Read the bitmaps; a span bit already set means another consumer recorded that key.
local stored = {}
for c = 1, #fields, CHUNK do
  local got = redis.call('HMGET', current, unpack(fields, c, math.min(c + CHUNK - 1, #fields)))
  for i = 1, #got do stored[#stored + 1] = got[i] or '' end
end
-- Each span's bytes are ORed into its bitmap now; they are written only if no bit overlaps.
local value, dirty = {}, {}
local function pad(v, size)
  if #v < size then return v .. string.rep('\0', size - #v) end
  return v
end
local function popcount(x)
  local count = 0
  while x > 0 do
    count, x = count + x % 2, math.floor(x / 2)
  end
  return count
end
local nspans = #spans / 12
local over_idx, over_old, already = {}, {}, 0
local at = 1
for i = 1, nspans do
  local field, first, len = struct.unpack('<i4i4i4', spans, (i - 1) * 12 + 1)
  local v = value[field + 1] or stored[field + 1]
  local size = #v
  if first >= size then -- appending: the usual case for a symbol trading in order
    value[field + 1] = pad(v, first) .. string.sub(masks, at, at + len - 1)
  else
    local shared = math.min(size - first, len)
    local merged, overlap = {}, false
    for j = 1, shared do
      local old, new = string.byte(v, first + j), string.byte(masks, at + j - 1)
      local both = bit.band(old, new)
      if both ~= 0 then
        overlap, already = true, already + popcount(both)
      end
      merged[j] = string.char(bit.bor(old, new))
    end
    if overlap then -- spans never share bytes, so v still holds the stored bytes here
      over_idx[#over_idx + 1] = struct.pack('<i4', i - 1)
      over_old[#over_old + 1] = pad(string.sub(v, first + 1, first + len), len)
    end
    value[field + 1] = string.sub(v, 1, first) .. table.concat(merged)
      .. string.sub(masks, at + shared, at + len - 1) .. string.sub(v, first + len + 1)
  end
  dirty[field + 1] = true
  at = at + len
end
if #over_idx > 0 and mode == 'filter' then
  return {2, table.concat(over_idx), table.concat(over_old)}
end

-- 3. Probes: a Bloom "maybe" is a duplicate only if some live window holds the key.
local nprobes = #probes / 24
local found, found_bytes = {}, {}
for i = 1, nprobes do
  local field, offset = struct.unpack('<i4i4', probes, (i - 1) * 24 + 1)
  local hit = has_bit(stored[field + 1], offset)
  for w = 2, #windows do
    if hit then break end
    hit = has_bit(redis.call('HGET', windows[w], fields[field + 1]) or '', offset)
  end
  found[i] = hit
  found_bytes[i] = hit and '\1' or '\0'
end
if mode == 'probe' then return {0, table.concat(found_bytes)} end

-- 4. Write: the rebuilt bitmaps (and the probes that were not found) in one HSET.
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
  local field, offset, partition, kafka_offset =
    struct.unpack('<i4i4i8i8', probes, (i - 1) * 24 + 1)
  if found[i] then
    remember(partition, kafka_offset)
  else
    local byte_at = math.floor(offset / 8)
    local v = pad(value[field + 1] or stored[field + 1], byte_at + 1)
    local byte = bit.bor(string.byte(v, byte_at + 1), bit.rshift(0x80, offset % 8))
    value[field + 1] = string.sub(v, 1, byte_at) .. string.char(byte) .. string.sub(v, byte_at + 2)
    dirty[field + 1] = true
  end
end
local writes = {}
for f in pairs(dirty) do
  writes[#writes + 1] = fields[f]
  writes[#writes + 1] = value[f]
end
for c = 1, #writes, CHUNK do
  redis.call('HSET', current, unpack(writes, c, math.min(c + CHUNK - 1, #writes)))
end
if #writes > 0 then redis.call('EXPIRE', current, ttl) end
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
ledger_write(KEYS[1], ofields, oranges, obatch)
return {0, table.concat(found_bytes), already}
