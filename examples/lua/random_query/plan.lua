-- Seed scenario 2: a random query parameter grouped under one name, with a
-- custom User-Agent, waiting 0.1 s between requests.
local swarmer = require("swarmer")

swarmer.user("QuickstartUser", {
  wait_time = swarmer.constant(0.1),
  tasks = {
    random_page = function(self)
      self.client:get("/index.html", {
        params = { ok = math.random(1, 1000000) },
        name = "/index.html?ok=[random]",
        headers = { ["User-Agent"] = "Mozilla/5.0 (swarmer quickstart)" },
      })
    end,
  },
})
