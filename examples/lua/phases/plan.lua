-- The seed's load phases, built in: the user types are plain classes,
-- and phases.toml says how many users of each run in each phase and how
-- long they wait, in one continuous test (no restart between phases).
--   swarmer -f plan.lua --phases phases.toml -H http://127.0.0.1:8080 --headless --csv out
-- The wait times below are the plan's own; a phase may override them.
local swarmer = require("swarmer")

swarmer.user("Weekday", {
  wait_time = swarmer.between(0.5, 1),
  tasks = {
    swarmer.task("browse", 3, function(self) self.client:get("/") end),
    function(self) self.client:get("/profile", { name = "profile" }) end,
  },
})

swarmer.user("Weekend", {
  wait_time = swarmer.between(0.5, 1),
  tasks = { function(self) self.client:get("/profile", { name = "profile" }) end },
})
