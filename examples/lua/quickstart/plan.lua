-- Locust's quick start as a Swarmer plan (seed scenario 1):
-- log in on start, then "/" (weight 2) and "/profile" (weight 1), waiting 5–9 s.
local swarmer = require("swarmer")

swarmer.user("WebsiteUser", {
  wait_time = swarmer.between(5, 9),

  on_start = function(self)
    self.client:post("/login", { data = { username = "ellen_key", password = "education" } })
  end,

  tasks = {
    swarmer.task("index", 2, function(self) self.client:get("/") end),
    swarmer.task("profile", 1, function(self) self.client:get("/profile") end),
  },
})
