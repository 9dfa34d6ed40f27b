-- Shared login helper: `require("common.auth")` from any plan in this folder.
local auth = {}

function auth.login(user, name)
  local r = user.client:post("/login", { data = { username = name, password = "secret" }, catch_response = true })
  if r.status_code ~= 200 then
    r:failure("login refused: " .. r.status_code)
  else
    r:success()
  end
end

return auth
