-- The dedup tier's two calls (store.py): 'probe' reads, 'record' writes, each atomic.
--
-- Each window is one hash, `{T}g{window}`: field <u8 name hash, <u8 bucket; value the
-- bitmap (one bit per seq, MSB first, 512 bytes at most). A call reads the fields it touches
-- with one HMGET and writes them back with one HSET, whatever the number of symbols.
-- Every key shares the tagged prefix T's hash tag: one Redis Cluster slot.
--
-- KEYS[1..] the live windows' hashes, newest (the one written) first
-- ARGV[1]  TTL seconds              ARGV[2] bitmap fields, 16 bytes each
-- ARGV[3]  spans, <i4 field index, <i4 first byte, <i4 byte count> each, sorted by field
-- ARGV[4]  the spans' mask bytes, concatenated
-- ARGV[5]  probes, <i4 field index, <i4 bit offset> each
-- ARGV[6]  mode: 'probe' (look the probes up in every live window, write nothing) or
--          'record' (OR the spans into the newest window, even where bits are set already)
--
-- Replies: probe, one byte per probe (1: found); record, the number of bits set already.

local CHUNK = 4000 -- unpack() stays well under Lua's C stack limit
local FIELD = 16 -- <u8 name hash, <u8 bucket
local current = KEYS[1]
local ttl = tonumber(ARGV[1])
local fields, packed = {}, ARGV[2]
for i = 0, #packed / FIELD - 1 do
  fields[i + 1] = string.sub(packed, i * FIELD + 1, i * FIELD + FIELD)
end
local spans, masks, probes, mode = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local stored = {}
for c = 1, #fields, CHUNK do
  local got = redis.call('HMGET', current, unpack(fields, c, math.min(c + CHUNK - 1, #fields)))
  for i = 1, #got do stored[#stored + 1] = got[i] or '' end
end

local function has_bit(bitmap, offset)
  local byte = string.byte(bitmap, math.floor(offset / 8) + 1)
  return byte ~= nil and bit.band(byte, bit.rshift(0x80, offset % 8)) ~= 0
end

if mode == 'probe' then
  -- A Bloom "maybe" is a duplicate only if some live window holds the key.
  local found = {}
  for i = 1, #probes / 8 do
    local field, offset = struct.unpack('<i4i4', probes, (i - 1) * 8 + 1)
    local hit = has_bit(stored[field + 1], offset)
    for w = 2, #KEYS do
      if hit then break end
      hit = has_bit(redis.call('HGET', KEYS[w], fields[field + 1]) or '', offset)
    end
    found[i] = hit and '\1' or '\0'
  end
  return table.concat(found)
end

-- record: each span's bytes ORed into its bitmap; the bits set already are counted.
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
local value, dirty, already = {}, {}, 0
local at = 1
for i = 1, #spans / 12 do
  local field, first, len = struct.unpack('<i4i4i4', spans, (i - 1) * 12 + 1)
  local v = value[field + 1] or stored[field + 1]
  local size = #v
  if first >= size then -- appending: the usual case for a symbol trading in order
    value[field + 1] = pad(v, first) .. string.sub(masks, at, at + len - 1)
  else
    local shared = math.min(size - first, len)
    local merged = {}
    for j = 1, shared do
      local old, new = string.byte(v, first + j), string.byte(masks, at + j - 1)
      already = already + popcount(bit.band(old, new))
      merged[j] = string.char(bit.bor(old, new))
    end
    value[field + 1] = string.sub(v, 1, first) .. table.concat(merged)
      .. string.sub(masks, at + shared, at + len - 1) .. string.sub(v, first + len + 1)
  end
  dirty[field + 1] = true
  at = at + len
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
return already
