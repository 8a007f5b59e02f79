-- csp.io: Go's io helpers over csp's streams (anything with read and write methods).
local check = require "csp.check"

local io = {}

-- The method `name` of v, or nil; never raises (a foreign userdata may have no __index).
local function method(v, name)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return nil end
  local ok, m = pcall(function() return v[name] end)
  if ok and (type(m) == "function" or (getmetatable(m) or {}).__call) then return m end
  return nil
end

--- Go's io.Copy: reads src until "EOF", writing everything to dst; returns the bytes copied and
--- the first read or write error (nil at EOF); a write that returns a count short of its piece
--- without an error ends the copy with "short write" (Go's io.ErrShortWrite).
function io.copy(dst, src)
  check.arg(method(dst, "write"), 1, "copy", "writer expected, got " .. check.typename(dst))
  check.arg(method(src, "read"), 2, "copy", "reader expected, got " .. check.typename(src))
  local n = 0
  while true do
    local s, err, code = src:read(65536)
    if s == nil then
      -- the code, not the message; a reader of Lua's own may give "EOF" as its message alone
      if (code or err) == "EOF" then return n end
      return n, err
    end
    local w, werr, _, sent = dst:write(s)
    if w == nil then return n + (math.type(sent) == "integer" and sent or 0), werr end
    if math.type(w) == "integer" and w < #s then return n + math.max(w, 0), "short write" end
    n = n + #s
  end
end

return io
