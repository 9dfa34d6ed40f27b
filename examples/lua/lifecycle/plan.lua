-- Locust's test-data lifecycle, step by step: each step prints one
-- numbered line, once per process where Locust prints it once per process
-- (tests/parity/ runs this plan and tests/parity/lifecycle.py side by side
-- and compares what they print).
--   swarmer -f plan.lua --master --headless -u 2 -t 5s --expect-workers 2
--   swarmer --worker -f - --shards 2      (twice)
local swarmer = require("swarmer")

-- 1. The plan's top level runs in every VM (one per shard, one per
-- process); printing from the process VM only gives Locust's line per process.
if swarmer.runner.process then print("1. plan parsed") end

swarmer.events.init:add_listener(function() print("2. init") end)

swarmer.events.test_start:add_listener(function()
  print("3. test start")
  if swarmer.runner.role ~= "master" then swarmer.shared.run_data = "run-data" end
  -- One token per process: the first user to start takes it (Locust's
  -- class attribute `first_start`).
  local first = swarmer.queue("first start")
  first:clear()
  first:push(true)
end)

swarmer.events.heartbeat_sent:add_listener(function() print("M2. heartbeat sent") end)
swarmer.events.heartbeat_received:add_listener(function() print("M3. heartbeat received") end)
swarmer.events.test_stopping:add_listener(function() print("6. test stopping") end)
swarmer.events.test_stop:add_listener(function() print("8. test stopped") end)
swarmer.events.quitting:add_listener(function() print("9. quitting") end)
swarmer.events.quit:add_listener(function(code) print("10. quit with code " .. code) end)

swarmer.user("DataUser", {
  wait_time = swarmer.constant(0.5),
  on_start = function(self)
    if swarmer.queue("first start"):pop() then print("X. first user of this process") end
    print("4. user started")
    self.own = self.client:post("/echo", { data = "user-data" }).text
  end,
  tasks = {
    function(self)
      self.client:get(("/headers?run=%s&user=%s"):format(swarmer.shared.run_data, self.own))
      print("5. task")
    end,
  },
  on_stop = function() print("7. user stopped") end,
})
