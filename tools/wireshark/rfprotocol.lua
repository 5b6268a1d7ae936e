-- Wireshark dissector for RFProtocol, routeflow's IPC (rfclient/rfproxy <-> rfserver).
--
-- Framing (src/routeflow/rflib/codec.py): an 8-byte header
--     "RF" | version (1 byte) | flags (1 byte, 0) | body length (4 bytes, big-endian)
-- then a msgpack body: a map whose "type" key names the message (msgspec tagged
-- structs: ClientHello, PortRegister, RouteMod, FibMod, DatapathStats, ...).
--
-- Usage:
--   wireshark -X lua_script:tools/wireshark/rfprotocol.lua
--   tshark -X lua_script:tools/wireshark/rfprotocol.lua -o rfprotocol.tcp_port:6634 \
--          -r capture.pcapng -Y rfprotocol -T fields -e rfprotocol.type
-- or copy the file to ~/.local/lib/wireshark/plugins/. rfserver speaks TCP with
-- `--listen tcp:127.0.0.1:6634` (the default port here; change it in the
-- protocol preferences). A heuristic also finds RFProtocol on any TCP port.

local rf = Proto("rfprotocol", "RouteFlow RFProtocol")

local f_magic = ProtoField.string("rfprotocol.magic", "Magic")
local f_version = ProtoField.uint8("rfprotocol.version", "Version")
local f_flags = ProtoField.uint8("rfprotocol.flags", "Flags", base.HEX)
local f_length = ProtoField.uint32("rfprotocol.length", "Body length")
local f_type = ProtoField.string("rfprotocol.type", "Message type")
local f_key = ProtoField.string("rfprotocol.key", "Key")
local f_value = ProtoField.string("rfprotocol.value", "Value")
local f_field = ProtoField.string("rfprotocol.field", "Field")
rf.fields = { f_magic, f_version, f_flags, f_length, f_type, f_key, f_value, f_field }

local e_bad = ProtoExpert.new("rfprotocol.bad", "Malformed RFProtocol", expert.group.MALFORMED,
                              expert.severity.ERROR)
rf.experts = { e_bad }

rf.prefs.tcp_port = Pref.uint("TCP port", 6634, "TCP port rfserver listens on")

local HEADER = 8
local MAX_DEPTH = 6
local MAX_TEXT = 160

-- --- a small msgpack reader ---------------------------------------------------------
-- read(tvb, off, limit) -> node, next offset. A node is {kind=..., text=..., range=...}
-- with .items (arrays: {node...}; maps: {{key=node, value=node}...}).

local read

local function str_node(tvb, off, n, kind)
  local text = n > 0 and tvb(off, n):string(ENC_UTF_8) or ""
  return { kind = kind or "str", text = text, range = tvb(off, n) }, off + n
end

local function container(tvb, start, off, n, is_map, limit)
  local items = {}
  for _ = 1, n do
    if is_map then
      local k, v
      k, off = read(tvb, off, limit)
      v, off = read(tvb, off, limit)
      items[#items + 1] = { key = k, value = v }
    else
      local v
      v, off = read(tvb, off, limit)
      items[#items + 1] = v
    end
  end
  return { kind = is_map and "map" or "array", items = items, range = tvb(start, off - start) }, off
end

read = function(tvb, off, limit)
  if off >= limit then error("truncated msgpack") end
  local b = tvb(off, 1):uint()
  local start = off
  off = off + 1
  local function scalar(n, text, kind)
    return { kind = kind or "int", text = text, range = tvb(start, 1 + n) }, off + n
  end
  if b <= 0x7f then return scalar(0, tostring(b)) end
  if b >= 0xe0 then return scalar(0, tostring(b - 256)) end
  if b >= 0x80 and b <= 0x8f then return container(tvb, start, off, b - 0x80, true, limit) end
  if b >= 0x90 and b <= 0x9f then return container(tvb, start, off, b - 0x90, false, limit) end
  if b >= 0xa0 and b <= 0xbf then return str_node(tvb, off, b - 0xa0) end
  if b == 0xc0 then return scalar(0, "nil", "nil") end
  if b == 0xc2 then return scalar(0, "false", "bool") end
  if b == 0xc3 then return scalar(0, "true", "bool") end
  if b == 0xcc then return scalar(1, tostring(tvb(off, 1):uint())) end
  if b == 0xcd then return scalar(2, tostring(tvb(off, 2):uint())) end
  if b == 0xce then return scalar(4, tostring(tvb(off, 4):uint())) end
  if b == 0xcf then return scalar(8, tostring(tvb(off, 8):uint64())) end
  if b == 0xd0 then return scalar(1, tostring(tvb(off, 1):int())) end
  if b == 0xd1 then return scalar(2, tostring(tvb(off, 2):int())) end
  if b == 0xd2 then return scalar(4, tostring(tvb(off, 4):int())) end
  if b == 0xd3 then return scalar(8, tostring(tvb(off, 8):int64())) end
  if b == 0xca then return scalar(4, tostring(tvb(off, 4):float()), "float") end
  if b == 0xcb then return scalar(8, tostring(tvb(off, 8):float()), "float") end
  if b == 0xd9 then return str_node(tvb, off + 1, tvb(off, 1):uint()) end
  if b == 0xda then return str_node(tvb, off + 2, tvb(off, 2):uint()) end
  if b == 0xdb then return str_node(tvb, off + 4, tvb(off, 4):uint()) end
  if b == 0xc4 then return str_node(tvb, off + 1, tvb(off, 1):uint(), "bin") end
  if b == 0xc5 then return str_node(tvb, off + 2, tvb(off, 2):uint(), "bin") end
  if b == 0xc6 then return str_node(tvb, off + 4, tvb(off, 4):uint(), "bin") end
  if b == 0xdc then return container(tvb, start, off + 2, tvb(off, 2):uint(), false, limit) end
  if b == 0xdd then return container(tvb, start, off + 4, tvb(off, 4):uint(), false, limit) end
  if b == 0xde then return container(tvb, start, off + 2, tvb(off, 2):uint(), true, limit) end
  if b == 0xdf then return container(tvb, start, off + 4, tvb(off, 4):uint(), true, limit) end
  local fixext = { [0xd4] = 1, [0xd5] = 2, [0xd6] = 4, [0xd7] = 8, [0xd8] = 16 }
  if fixext[b] then return scalar(1 + fixext[b], "ext", "ext") end
  if b == 0xc7 then return scalar(2 + tvb(off, 1):uint(), "ext", "ext") end
  if b == 0xc8 then return scalar(3 + tvb(off, 2):uint(), "ext", "ext") end
  if b == 0xc9 then return scalar(5 + tvb(off, 4):uint(), "ext", "ext") end
  error(string.format("unknown msgpack byte 0x%02x", b))
end

-- Compact one-line text of a node (JSON-like), cut at MAX_TEXT characters.
local function render(node)
  if node.kind == "str" then return string.format("%q", node.text) end
  if node.kind == "bin" then return "<" .. tostring(node.range:len()) .. " bytes>" end
  if node.kind == "array" then
    local parts = {}
    for i, v in ipairs(node.items) do
      parts[i] = render(v)
      if #table.concat(parts, ",") > MAX_TEXT then parts[i] = "..."; break end
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  if node.kind == "map" then
    local parts = {}
    for i, kv in ipairs(node.items) do
      parts[i] = (kv.key.text or render(kv.key)) .. "=" .. render(kv.value)
      if #table.concat(parts, ",") > MAX_TEXT then parts[i] = "..."; break end
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return node.text
end

local function clip(text)
  if #text > MAX_TEXT then return text:sub(1, MAX_TEXT) .. "..." end
  return text
end

-- Nested arrays and maps become subtrees, so a RouteMod's routes can be unfolded.
local function add_children(tree, node, depth)
  if depth > MAX_DEPTH then return end
  if node.kind == "array" then
    for i, v in ipairs(node.items) do
      local sub = tree:add(f_field, v.range, string.format("[%d]", i - 1))
      sub:set_text(string.format("[%d]: %s", i - 1, clip(render(v))))
      add_children(sub, v, depth + 1)
    end
  elseif node.kind == "map" then
    for _, kv in ipairs(node.items) do
      local name = kv.key.text or render(kv.key)
      local sub = tree:add(f_field, kv.value.range, name)
      sub:set_text(string.format("%s: %s", name, clip(render(kv.value))))
      add_children(sub, kv.value, depth + 1)
    end
  end
end

-- --- frames -----------------------------------------------------------------------------

local function pdu_length(tvb, pinfo, offset)
  return HEADER + tvb(offset + 4, 4):uint()
end

local function dissect_frame(tvb, pinfo, tree)
  local length = tvb(4, 4):uint()
  local subtree = tree:add(rf, tvb(0, HEADER + length))
  subtree:add(f_magic, tvb(0, 2))
  subtree:add(f_version, tvb(2, 1))
  subtree:add(f_flags, tvb(3, 1))
  subtree:add(f_length, tvb(4, 4))
  pinfo.cols.protocol = "RFProtocol"
  if tvb(0, 2):string() ~= "RF" then
    subtree:add_proto_expert_info(e_bad, "bad magic")
    return tvb:len()
  end
  local ok, body = pcall(read, tvb, HEADER, HEADER + length)
  if not ok or body.kind ~= "map" then
    subtree:add_proto_expert_info(e_bad, "body is not a msgpack map: " .. tostring(body))
    return HEADER + length
  end
  local name = "?"
  for _, kv in ipairs(body.items) do
    if kv.key.text == "type" then name = kv.value.text or "?" end
  end
  subtree:append_text(": " .. name)
  subtree:add(f_type, body.range, name)
  for _, kv in ipairs(body.items) do
    local key = kv.key.text or render(kv.key)
    if key ~= "type" then
      local item = subtree:add(f_key, kv.value.range, key)
      item:set_text(string.format("%s: %s", key, clip(render(kv.value))))
      item:add(f_value, kv.value.range, clip(render(kv.value))):set_hidden()
      add_children(item, kv.value, 1)
    end
  end
  local info = tostring(pinfo.cols.info)
  if info:find("^RFProtocol ") then
    pinfo.cols.info:append(", " .. name)
  else
    pinfo.cols.info = "RFProtocol " .. name
  end
  return HEADER + length
end

function rf.dissector(tvb, pinfo, tree)
  if tvb:len() < 2 or tvb(0, 2):string() ~= "RF" then return 0 end
  dissect_tcp_pdus(tvb, tree, HEADER, pdu_length, dissect_frame, true)
  return tvb:len()
end

-- Any TCP stream that starts with an RFProtocol header.
local function heuristic(tvb, pinfo, tree)
  if tvb:len() < HEADER then return false end
  if tvb(0, 2):string() ~= "RF" or tvb(2, 1):uint() ~= 1 or tvb(3, 1):uint() ~= 0 then
    return false
  end
  if tvb(4, 4):uint() > 16 * 1024 * 1024 then return false end
  pinfo.conversation = rf
  rf.dissector(tvb, pinfo, tree)
  return true
end
rf:register_heuristic("tcp", heuristic)

local tcp_ports = DissectorTable.get("tcp.port")
local registered_port = 0
local function register_port(port)
  if registered_port ~= 0 then tcp_ports:remove(registered_port, rf) end
  if port ~= 0 then tcp_ports:add(port, rf) end
  registered_port = port
end
register_port(rf.prefs.tcp_port)

function rf.prefs_changed()
  if rf.prefs.tcp_port ~= registered_port then register_port(rf.prefs.tcp_port) end
end
