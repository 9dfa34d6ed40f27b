-- A plan for a distributed run: several files and a data file, shipped by
-- the master to workers started with `-f -`:
--   swarmer -f examples/lua/cluster/plan.lua --master --expect-workers 2 ...
--   swarmer --worker -f - --master-host MASTER
local swarmer = require("swarmer")
local pages = require("common.pages")

local users = swarmer.csv("users.csv")   -- travels with the plan

swarmer.user("Shopper", {
  wait_time = swarmer.constant(0.05),
  on_start = function(self)
    local account = users:next()
    self.client:post("/login", { data = { username = account.username, password = account.password } })
  end,
  tasks = {
    swarmer.task("browse", 3, function(self) pages.browse(self) end),
    swarmer.task("profile", 1, function(self) self.client:get("/profile") end),
  },
})
