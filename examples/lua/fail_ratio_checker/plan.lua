-- A background checker that stops the test when more than 20% of requests
-- fail (Locust's `gevent.spawn(checker, environment)` from an init listener).
-- Listeners run once per process, so one checker runs, whatever the shards.
local swarmer = require("swarmer")

local function checker()
  while true do
    swarmer.sleep(1)
    local stats = swarmer.stats()
    if stats.state == "stopping" or stats.state == "stopped" then return end
    if stats.num_requests > 0 and stats.fail_ratio > 0.2 then
      print(("fail ratio was %.2f, quitting"):format(stats.fail_ratio))
      swarmer.quit()
      return
    end
  end
end

swarmer.events.init:add_listener(function() swarmer.spawn(checker) end)

swarmer.user("FlakyUser", {
  wait_time = swarmer.constant(0.05),
  tasks = {
    flaky = function(self) self.client:get("/flaky", { params = { rate = 0.5 } }) end,
  },
})
