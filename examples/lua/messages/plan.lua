-- Locust's first custom-message example: the master (or, run locally, this
-- same process) sends three test users; each worker prints them and thanks
-- the master. Handlers run once per process, whatever --shards says.
--   swarmer -f plan.lua --master --headless -u 2 -t 3s --expect-workers 2
--   swarmer --worker -f - --shards 2      (twice)
local swarmer = require("swarmer")

swarmer.register_message("test_users", function(users)
  for _, user in ipairs(users) do print(("User %s received"):format(user.name)) end
  swarmer.send_message("acknowledge_users", ("Thanks for the %d users!"):format(#users))
end)
swarmer.register_message("acknowledge_users", function(text) print(text) end)

swarmer.events.test_start:add_listener(function()
  if swarmer.runner.role == "worker" then return end
  swarmer.send_message("test_users", { { name = "User1" }, { name = "User2" }, { name = "User3" } })
end)

swarmer.user("Idle", {
  wait_time = swarmer.constant(1),
  tasks = { function(self) self.client:get("/") end },
})
