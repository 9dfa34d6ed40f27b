-- The benchmark user, in Lua: GET / in a loop with no wait. The same
-- behaviour in Rust is examples/rust/hello_plan.rs; bench/run.sh compares them.
local swarmer = require("swarmer")

swarmer.user("HelloUser", {
  tasks = {
    get_root = function(self) self.client:get("/") end,
  },
})
