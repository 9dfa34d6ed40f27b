-- Options of the plan's own, on the command line (Locust's
-- init_command_line_parser): swarmer -f plan.lua --page /profile --pause 0.2
local swarmer = require("swarmer")

swarmer.add_option{ name = "page", default = "/", help = "Path every user requests" }
swarmer.add_option{ name = "pause", type = "number", default = 0.1, help = "Seconds between requests" }
swarmer.add_option{ name = "verbose", type = "boolean", default = false, help = "Print each response status" }

swarmer.user("Configured", {
  wait_time = function() return swarmer.options.pause end,
  tasks = {
    function(self)
      local r = self.client:get(swarmer.options.page)
      if swarmer.options.verbose then print(r.status_code) end
    end,
  },
})
