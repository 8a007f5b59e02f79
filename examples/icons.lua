-- Seed 2.3.1, lazy initialisation: Icon(name) loads every icon the first time one is asked
-- for. loadIcons is slow (it sleeps, as reading files would), so 100 goroutines calling Icon at
-- once really overlap while it runs. Both versions of the seed:
--   1. a read-write mutex, double-checked: readers look under rlock; a miss takes the write lock
--      and must check again, since another goroutine may have loaded the icons meanwhile;
--   2. csp.once() (Go's sync.Once): once:call(loadIcons) runs it once, concurrent callers wait.
-- Each prints how many times loadIcons ran (1) and how many callers got their icon (100).
-- Usage: lua5.4 examples/icons.lua [CALLERS]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("icons.lua [CALLERS]", "lazy icon loading: RWMutex and csp.once")
f:arg("callers", "int", 100, "goroutines calling Icon at once", { min = 1 })
local opts = f:parse(arg)

local NAMES = { "spades.png", "hearts.png", "diamonds.png", "clubs.png" }
local icons  -- nil until loaded
local loads = 0

local function loadIcons()
  loads = loads + 1
  csp.sleep(0.05)  -- reading and decoding the images takes a while
  local m = {}
  for _, name in ipairs(NAMES) do m[name] = "image " .. name end
  icons = m
end

-- Version 1: RWMutex, double-checked.
local mu = csp.rwmutex()  -- guards icons
local function Icon1(name)
  mu:rlock()
  if icons ~= nil then
    local icon = icons[name]
    mu:runlock()
    return icon
  end
  mu:runlock()

  -- acquire an exclusive lock
  mu:lock()
  if icons == nil then  -- NOTE: must recheck for nil
    loadIcons()
  end
  local icon = icons[name]
  mu:unlock()
  return icon
end

-- Version 2: csp.once.
local loadIconsOnce = csp.once()
local function Icon2(name)
  loadIconsOnce:call(loadIcons)
  return icons[name]
end

local function run(title, Icon)
  icons, loads = nil, 0
  local got = 0
  local t0 = csp.now()
  local wg = csp.waitgroup()
  for i = 1, opts.callers do
    wg:go(function()
      local name = NAMES[(i - 1) % #NAMES + 1]
      if Icon(name) == "image " .. name then got = got + 1 end
    end)
  end
  wg:wait()
  print(title)
  print(("  loadIcons ran %d time(s); %d of %d concurrent callers got their icon in %.0f ms")
    :format(loads, got, opts.callers, (csp.now() - t0) * 1000))
end

run("version 1: sync.RWMutex, double-checked", Icon1)
run("version 2: csp.once (sync.Once)", Icon2)
