-- Where test data can be prepared and cleaned up, in the order it happens
-- (Locust's "test data management" lifecycle). Each step records a custom
-- sample named after itself, so the statistics show that it ran.
--
-- Listeners run once per process (in the process VM); users run in one VM
-- per shard. What a listener prepares for users goes through
-- swarmer.shared (values) and swarmer.queue (values each taken once).
local swarmer = require("swarmer")

-- 1. When the plan is loaded (in every VM): static data.
local usernames = { "ellen", "olle", "anna" }
local accounts = swarmer.queue("accounts")

local function mark(self_or_client, step)
  self_or_client:fire_request{ request_type = "lifecycle", name = step, response_time = 0 }
end

-- 2. At init (once per process, before any test starts).
swarmer.events.init:add_listener(function() swarmer.shared.init = true end)

-- 3. At test start (once per process, every time a test starts; may wait,
-- e.g. to create the accounts through an API).
swarmer.events.test_start:add_listener(function()
  swarmer.sleep(0.01)
  swarmer.shared.test_starts = (swarmer.shared.test_starts or 0) + 1
  swarmer.shared.token = "token-" .. swarmer.shared.test_starts
  accounts:clear()
  for _, name in ipairs(usernames) do accounts:push(name) end
end)

-- 7. At test stop, 8. at quitting: clean up what the test made.
swarmer.events.test_stop:add_listener(function() swarmer.shared.token = nil end)
swarmer.events.quitting:add_listener(function() swarmer.shared.init = nil end)

swarmer.user("DataUser", {
  wait_time = swarmer.constant(0.05),
  -- 4. Per user, on start: an account no other user has, on any shard.
  on_start = function(self)
    self.username = accounts:pop()
    if not self.username then swarmer.stop_user() end
    self.client:post("/login", { data = { username = self.username, password = "x" } })
    if swarmer.shared.init and swarmer.shared.token == "token-1" then
      mark(self.client, "4-user-start-sees-init-and-one-test-start")
    end
  end,
  tasks = {
    -- 5. Per task: fresh data each time.
    function(self)
      local r = self.client:get("/profile", { catch_response = true })
      if r.text == "Profile of " .. self.username then r:success() else r:failure("wrong user: " .. r.text) end
    end,
  },
  -- 6. Per user, on stop.
  on_stop = function(self) if self.username then mark(self.client, "6-user-stop") end end,
})
