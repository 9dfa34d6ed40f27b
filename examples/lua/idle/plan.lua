-- Users that make one request and then wait an hour: bench/run.sh measures
-- the memory of an idle Lua user with it (the Rust twin is builtin:idle).
local swarmer = require("swarmer")

swarmer.user("IdleUser", {
  wait_time = swarmer.constant(3600),
  tasks = { function(self) self.client:get("/") end },
})
