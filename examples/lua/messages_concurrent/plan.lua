-- Locust's second custom-message example: the master splits one name per
-- user over its workers, each user takes a name no other user has (on any
-- shard), and a handler that waits does not hold up the others (every
-- handler may wait in Swarmer: Locust's concurrent=True).
--   swarmer -f plan.lua --master --headless -u 4 -t 4s --expect-workers 2
--   swarmer --worker -f - --shards 2      (twice)
local swarmer = require("swarmer")

local usernames = swarmer.queue("usernames")

swarmer.register_message("test_users", function(users)
  for _, user in ipairs(users) do usernames:push(user.name) end
  swarmer.send_message("acknowledge_users", ("Thanks for the %d users!"):format(#users))
  swarmer.send_message("concurrent_message", "Message to concurrent handler")
end)
swarmer.register_message("acknowledge_users", function(text) print(text) end)
swarmer.register_message("concurrent_message", function(text)
  print(("concurrent_message received with data: '%s'"):format(text))
  swarmer.sleep(1)
  print("finished processing concurrent_message")
end)

swarmer.events.test_start:add_listener(function()
  if swarmer.runner.role == "worker" then return end
  local users = {}
  for i = 0, swarmer.runner.target_user_count - 1 do table.insert(users, { name = "User" .. i }) end
  local workers = swarmer.runner.role == "master" and swarmer.runner.workers() or { false }
  local size = #users // #workers
  for i, worker in ipairs(workers) do
    local share = {}
    local last = i == #workers and #users or i * size
    for j = (i - 1) * size + 1, last do table.insert(share, users[j]) end
    swarmer.send_message("test_users", share, worker or nil)
  end
end)

swarmer.user("Named", {
  wait_time = swarmer.constant(0.5),
  on_start = function(self) self.username = usernames:pop() end,
  tasks = {
    function(self)
      self.client:get("/")
      print("name " .. self.username)
    end,
  },
})
