-- The Kafka offset ledger shared by classify.lua and dedup.lua: K2 prepends this file to
-- each script when it registers it (see k2lib/ingestion/scripts.py).

-- Kafka offsets already processed: per partition (a hash field, <i8), sorted disjoint ranges
-- packed as <i8 pairs. Exact, so records deferred and backfilled later are not replays.
local function ledger_read(key, runs)
  local fields, index, ranges, batch = {}, {}, {}, {}
  for i = 1, #runs / 24 do
    local at = (i - 1) * 24 + 1
    local field = string.sub(runs, at, at + 7)
    local _, lo, hi = struct.unpack('<i8i8i8', runs, at)
    local j = index[field]
    if not j then
      j = #fields + 1
      fields[j], index[field], batch[j] = field, j, {}
    end
    batch[j][#batch[j] + 1] = {lo, hi}
  end
  if #fields > 0 then
    local got = redis.call('HMGET', key, unpack(fields))
    for j = 1, #fields do
      local list, packed = {}, got[j] or ''
      for k = 1, #packed / 16 do list[k] = {struct.unpack('<i8i8', packed, (k - 1) * 16 + 1)} end
      ranges[j] = list
    end
  end
  return fields, ranges, batch
end

local function ledger_overlaps(fields, ranges, batch)
  local out = {}
  for j = 1, #fields do
    for _, run in ipairs(batch[j]) do
      for _, r in ipairs(ranges[j]) do
        if r[1] <= run[2] and r[2] >= run[1] then
          local lo, hi = math.max(run[1], r[1]), math.min(run[2], r[2])
          out[#out + 1] = fields[j] .. struct.pack('<i8i8', lo, hi)
        end
      end
    end
  end
  return out
end

local function ledger_write(key, fields, ranges, batch)
  local args = {}
  for j = 1, #fields do
    local all = {}
    for _, r in ipairs(ranges[j]) do all[#all + 1] = r end
    for _, r in ipairs(batch[j]) do all[#all + 1] = r end
    table.sort(all, function(x, y) return x[1] < y[1] end)
    local merged, packed = {}, {}
    for _, r in ipairs(all) do
      local last = merged[#merged]
      if last and r[1] <= last[2] + 1 then
        if r[2] > last[2] then last[2] = r[2] end
      else
        merged[#merged + 1] = {r[1], r[2]}
      end
    end
    for k, r in ipairs(merged) do packed[k] = struct.pack('<i8i8', r[1], r[2]) end
    args[#args + 1] = fields[j]
    args[#args + 1] = table.concat(packed)
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
