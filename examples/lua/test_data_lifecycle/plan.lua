-- Where test data can be prepared and cleaned up, in the order it happens
-- (Locust's "test data management" lifecycle). Each step records a custom
-- sample named after itself, so the statistics show that it ran.
local swarmer = require("swarmer")

-- 1. When the plan is loaded (once per shard VM): static data.
local usernames = { "ellen", "olle", "anna" }

local function mark(self_or_client, step)
  self_or_client:fire_request{ request_type = "lifecycle", name = step, response_time = 0 }
end

-- Data shared by the users of this shard, filled by the hooks below.
local shard_data = {}

-- 2. At init (once per shard, before any test starts).
swarmer.events.init:add_listener(function() shard_data.init = true end)

-- 3. At test start (every time a test starts; may wait, e.g. to call an API).
swarmer.events.test_start:add_listener(function()
  swarmer.sleep(0.01)
  shard_data.token = "token-" .. swarmer.runner.shard
end)

-- 7. At test stop, 8. at quitting: clean up what the test made.
swarmer.events.test_stop:add_listener(function() shard_data.token = nil end)
swarmer.events.quitting:add_listener(function() shard_data.init = nil end)

swarmer.user("DataUser", {
  wait_time = swarmer.constant(0.05),
  -- 4. Per user, on start.
  on_start = function(self)
    self.username = usernames[(self.id % #usernames) + 1]
    self.client:post("/login", { data = { username = self.username, password = "x" } })
    if shard_data.init and shard_data.token then mark(self.client, "4-user-start-sees-init-and-test-start") end
  end,
  tasks = {
    -- 5. Per task: fresh data each time.
    function(self)
      local r = self.client:get("/profile", { catch_response = true })
      if r.text == "Profile of " .. self.username then r:success() else r:failure("wrong user: " .. r.text) end
    end,
  },
  -- 6. Per user, on stop.
  on_stop = function(self) mark(self.client, "6-user-stop") end,
})
