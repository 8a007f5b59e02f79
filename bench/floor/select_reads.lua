-- select's floor with its reads: bench/floor/select.lua, but each select (the parking one too)
-- first reads its case table as any select over a table must, through the Lua API (floor.c,
-- fl_select_reads: the options probe, then per case lua_rawgeti, lua_touserdata and the size
-- check that is safe on any value); ns per select.
local dir = arg and arg[0] and arg[0]:match("^(.*)/") or "bench/floor"
assert(loadfile(dir .. "/select.lua"))("reads")
