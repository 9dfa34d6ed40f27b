-- Test data next to the plan: each user logs in with its own row of
-- users.csv (unique across all shards), and browses products from a JSON file.
local swarmer = require("swarmer")

local users = swarmer.csv("users.csv")        -- loaded once per process, shared by every shard
local catalog = swarmer.json("catalog.json")  -- read by each shard's VM

swarmer.user("Customer", {
  wait_time = swarmer.constant(0.05),
  on_start = function(self)
    local account = users:take()               -- nil once every row is taken
    if not account then swarmer.stop_user() end
    self.account = account
    self.client:post("/login", { data = { username = account.username, password = account.password } })
  end,
  tasks = {
    function(self)
      local product = swarmer.random.choice(catalog.products)
      local r = self.client:get("/profile", { catch_response = true, name = "/profile" })
      if r.text == "Profile of " .. self.account.username then r:success() else r:failure("wrong user") end
      self.client:get("/index.html", { params = { product = product }, name = "/index.html?product=[name]" })
    end,
  },
})
