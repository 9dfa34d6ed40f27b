-- Test data split over the workers with custom messages (Locust's
-- register_message / send_message example): at test start the master deals
-- the rows of users.csv out to its workers, each worker's users log in with
-- the rows it got, and every worker tells the master how many it received.
--   swarmer -f plan.lua --master --expect-workers 2 ...
--   swarmer --worker -f - ...
local swarmer = require("swarmer")

-- This worker's share of the accounts: each is taken by one user, on
-- whichever shard it runs (handlers run once per process).
local accounts = swarmer.queue("accounts")

swarmer.register_message("test_users", function(data)
  accounts:extend(data)
  swarmer.send_message("acknowledge_users", { count = #data })
end)

swarmer.register_message("acknowledge_users", function(data, from)
  print(("worker %s received %d users"):format(from, data.count))
end)

swarmer.events.test_start:add_listener(function()
  if swarmer.runner.role ~= "master" then return end
  local users = swarmer.csv("users.csv"):rows()
  local workers = swarmer.runner.workers()
  table.sort(workers)
  for i, worker in ipairs(workers) do
    local share = {}
    for j = i, #users, #workers do table.insert(share, users[j]) end
    swarmer.send_message("test_users", share, worker)
  end
end)

swarmer.user("Member", {
  wait_time = swarmer.constant(0.2),
  on_start = function(self)
    local account = accounts:shift()
    if not account then swarmer.stop_user() end
    self.client:post("/login", { data = { username = account.username, password = account.password },
                                 name = "login as " .. account.username })
  end,
  tasks = { function(self) self.client:get("/profile") end },
})
