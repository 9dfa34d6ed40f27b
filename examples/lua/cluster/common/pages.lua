-- Shared page helpers, found by `require("common.pages")` on every worker.
local pages = {}

function pages.browse(user)
  user.client:get("/", { name = "/ (browse)" })
end

return pages
