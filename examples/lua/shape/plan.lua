-- A load shape (Locust's LoadTestShape): weekday traffic, then a weekend
-- with another mix of user types, then the end of the test.
--   swarmer -f plan.lua -H http://127.0.0.1:8080 --headless
-- The shape sets users, spawn rate and mix; -u and -r are not needed.
local swarmer = require("swarmer")

swarmer.user("Weekday", {
  wait_time = swarmer.between(0.1, 0.2),
  tasks = { function(self) self.client:get("/") end },
})
swarmer.user("Weekend", {
  wait_time = swarmer.between(1, 2),
  tasks = { function(self) self.client:get("/profile") end },
})

-- Each step: its name, until this many seconds, this many users, started
-- at this rate, in this mix (weights by class name).
local steps = {
  { name = "weekday", until_s = 20, users = 40, rate = 10, mix = { Weekday = 3, Weekend = 1 } },
  { name = "weekend", until_s = 40, users = 60, rate = 10, mix = { Weekday = 1, Weekend = 2 } },
}

swarmer.shape("week", {
  tick = function(run_time)
    for _, step in ipairs(steps) do
      if run_time < step.until_s then
        -- The fourth value names the step (in the charts and reports) and
        -- says when it ends (the web UI shows the time left).
        return step.users, step.rate, step.mix, { name = step.name, ends_at = step.until_s }
      end
    end
    return nil -- the end of the test
  end,
})
