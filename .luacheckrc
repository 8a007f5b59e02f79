-- luacheck: lua/ spec/ examples/ bench/*.lua (`make lint`).
std = "lua54"
-- select handlers receive (v, ok) and callbacks are written with their full signature even
-- when a body needs only part of it; unused locals and loop variables still warn.
unused_args = false
exclude_files = { "build/**", "build-asan/**", "build-rock/**", ".luarocks/**", "lua_modules/**" }
files["spec/**/*.lua"] = { std = "+busted" }
