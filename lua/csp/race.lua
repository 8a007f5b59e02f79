-- csp.race: the race detector. Requiring it turns the detector on, as CSP_RACE=1 does (do it
-- before anything else: goroutines and globals made earlier are not fully seen). Returns
-- csp.race: watch(t [, name]), acquire(x), release(x), errors(), enabled().
local core = require "csp.core"
core._race_enable(os.getenv("CSP_RACE") == "report" and "report" or "1")
return require("csp").race
