-- A plan split into files, like a locustfile project with common/auth.lua.
-- `require` finds modules next to the plan.
local swarmer = require("swarmer")
local auth = require("common.auth")

swarmer.user("Shopper", {
  wait_time = swarmer.constant(0.05),
  on_start = function(self)
    auth.login(self, "shopper" .. self.id)
  end,
  tasks = {
    profile = function(self)
      local r = self.client:get("/profile", { catch_response = true })
      if not r.text:find("Profile of shopper", 1, true) then
        r:failure("not logged in: " .. r.text)
      end
    end,
  },
})
