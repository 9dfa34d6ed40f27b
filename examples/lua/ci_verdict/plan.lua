-- A test a pipeline can trust: thresholds give the run its verdict
-- (exit code 99 when one is crossed), a JUnit file lists them for the CI
-- dashboard. Run it with ./run.sh (it starts the built-in target).
local swarmer = require("swarmer")

swarmer.user("Shopper", {
  wait_time = swarmer.constant(0.02),
  on_start = function(self)
    self.client:post("/login", { data = { username = "ci", password = "ci" } })
  end,
  tasks = {
    swarmer.task("browse", 3, function(self) self.client:get("/") end),
    swarmer.task("profile", 1, function(self) self.client:get("/profile") end),
  },
})

-- The plan's own conditions, judged with those of swarmer.toml and the
-- command line.
swarmer.threshold("fail_ratio<1%")
swarmer.threshold("[GET /profile] requests>=1")
