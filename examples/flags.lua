-- flags: the examples' command lines, after Go's flag package. Flags come first (`-name`,
-- `--name`, `-name=value`, `-name value`; a bool flag takes no separate value); the first
-- non-flag, `-` or `--` ends them. `-help`, `--help` (and `-h` unless a flag is called h) print
-- the usage and exit 0. An unknown flag, a missing or malformed value, a positional argument
-- that does not parse, too few or too many arguments print one line naming the problem, then
-- the usage, and exit 2 (never a traceback).
--
--   package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
--   local f = require("flags").new("countdown1.lua [COUNT [INTERVAL]]", "what it does")
--   f:flag("depth", "int", nil, "crawl at most N links deep", { min = 0, meta = "N" })
--   f:arg("count", "int", 10, "seconds to count down", { min = 1 })
--   f:rest("URL", 1)                              -- at least one URL, all in opts.rest
--   local opts = f:parse(arg)                     -- opts.depth, opts.count, opts.rest
local M = {}

local Set = {}
Set.__index = Set

-- Parsers: value or nil, problem.
local KINDS = {
  string = function(s) return s end,
  int = function(s)
    local v = math.tointeger(tonumber(s))
    if v == nil then return nil, "not an integer" end
    return v
  end,
  number = function(s)
    local v = tonumber(s)
    if v == nil or v ~= v then return nil, "not a number" end
    return v
  end,
  bool = function(s)
    if s == "true" or s == "1" or s == "t" then return true end
    if s == "false" or s == "0" or s == "f" then return false end
    return nil, "not a boolean"
  end,
}

-- A flag set for one program: synopsis follows "usage: ", about is a line below it.
function M.new(synopsis, about)
  return setmetatable({ synopsis = synopsis, about = about, flags = {}, byname = {},
                        args = {} }, Set)
end

local function check(kind, v, opts)
  if kind == "string" or kind == "bool" then return v end
  if opts.min and v < opts.min then return nil, "must be at least " .. opts.min end
  if opts.positive and v <= 0 then return nil, "must be positive" end
  return v
end

-- A flag: name, kind ("bool", "int", "number", "string"), default, help,
-- opts {min=, positive=, meta= (value name in the usage)}.
function Set:flag(name, kind, default, help, opts)
  assert(KINDS[kind], "flags: unknown kind " .. tostring(kind))
  local fl = { name = name, kind = kind, default = default, help = help or "", opts = opts or {} }
  if kind == "bool" and default == nil then fl.default = false end
  self.flags[#self.flags + 1] = fl
  self.byname[name] = fl
  return self
end

-- An optional positional argument (a default, possibly nil), in order after the flags.
function Set:arg(name, kind, default, help, opts)
  assert(KINDS[kind] and kind ~= "bool", "flags: bad positional kind " .. tostring(kind))
  self.args[#self.args + 1] = { name = name, kind = kind, default = default, help = help or "",
                                opts = opts or {} }
  return self
end

-- The remaining arguments, named meta in the usage, at least min of them, in opts.rest.
function Set:rest(meta, min)
  self.rest_meta, self.rest_min = meta, min or 0
  return self
end

function Set:usage()
  local out = { "usage: " .. self.synopsis }
  if self.about then out[#out + 1] = self.about end
  for _, fl in ipairs(self.flags) do
    local head = "  -" .. fl.name
    if fl.kind ~= "bool" then head = head .. " " .. (fl.opts.meta or fl.kind) end
    local line = ("%-18s %s"):format(head, fl.help)
    if fl.kind ~= "bool" and fl.default ~= nil then line = line .. (" (default %s)"):format(fl.default) end
    out[#out + 1] = line
  end
  for _, a in ipairs(self.args) do
    local line = ("  %-16s %s"):format(a.name:upper(), a.help)
    if a.default ~= nil then line = line .. (" (default %s)"):format(a.default) end
    out[#out + 1] = line
  end
  return table.concat(out, "\n") .. "\n"
end

-- Prints the problem and the usage on stderr, exits 2 (Go's flag.ExitOnError).
function Set:fail(fmt, ...)
  io.stderr:write(fmt:format(...), "\n", self:usage())
  io.stderr:flush()
  os.exit(2)
end

function Set:help()
  io.stderr:write(self:usage())
  io.stderr:flush()
  os.exit(0)
end

local function value(self, what, kind, s, opts)
  local v, problem = KINDS[kind](s)
  if v ~= nil then v, problem = check(kind, v, opts) end
  if v == nil then self:fail('invalid value "%s" for %s: %s', s, what, problem) end
  return v
end

-- Parses argv (the script's `arg`); returns opts: one field per flag and positional argument
-- (their defaults when absent) and opts.rest, the remaining arguments.
function Set:parse(argv)
  local opts, i = {}, 1
  for _, fl in ipairs(self.flags) do opts[fl.name] = fl.default end
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--" then i = i + 1 break end
    if a == "-" or a:sub(1, 1) ~= "-" then break end
    i = i + 1
    local name, eq, val = a:match("^%-%-?([^=]*)(=?)(.*)$")
    local fl = self.byname[name]
    if not fl then
      if name == "help" or name == "h" then self:help() end
      self:fail("flag provided but not defined: %s", a)
    end
    if fl.kind == "bool" then
      opts[name] = eq == "" or value(self, "flag -" .. name, "bool", val, fl.opts)
    else
      if eq == "" then
        val = argv[i]
        if val == nil then self:fail("flag needs an argument: -%s", name) end
        i = i + 1
      end
      opts[name] = value(self, "flag -" .. name, fl.kind, val, fl.opts)
    end
  end
  for _, a in ipairs(self.args) do
    local s = argv[i]
    if s == nil then
      opts[a.name] = a.default
    else
      opts[a.name] = value(self, a.name:upper(), a.kind, s, a.opts)
      i = i + 1
    end
  end
  local rest = {}
  while argv[i] ~= nil do
    rest[#rest + 1] = argv[i]
    i = i + 1
  end
  if not self.rest_meta and #rest > 0 then
    self:fail("too many arguments: %s", table.concat(rest, " "))
  end
  if self.rest_meta and #rest < self.rest_min then self:fail("missing %s", self.rest_meta) end
  opts.rest = rest
  return opts
end

return M
