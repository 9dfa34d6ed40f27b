-- A protocol Swarmer has no client for: a Redis-like key-value store
-- spoken over raw TCP, each command timed and recorded by the plan with
-- self.client:measure (an error inside is the failure). Against the
-- built-in target's key-value server:
--   swarmer target --kv-bind 127.0.0.1:6400 &
--   swarmer -f examples/lua/own_protocol/plan.lua -H tcp://127.0.0.1:6400 -u 10 -r 10 -t 30s --headless
-- Rows: `kv SET`, `kv GET`, `kv INCR`. The same pattern fits any
-- request/reply protocol: connect, send bytes, read lines or counted bytes.
local swarmer = require("swarmer")

-- One command and its reply, in Redis's reply format: +simple, -error,
-- :integer, $length then the bytes ($-1: none).
local function command(conn, line)
  local sent, why = conn:send(line .. "\r\n")
  if not sent then error("send: " .. why, 0) end
  local head, why2 = conn:receive_line(2)
  if not head then error("reply: " .. why2, 0) end
  local kind, rest = head:sub(1, 1), head:sub(2)
  if kind == "-" then error(rest, 0) end
  if kind == ":" then return math.tointeger(rest) end
  if kind == "$" then
    local n = math.tointeger(rest)
    if n == nil then error("bad length " .. rest, 0) end
    if n < 0 then return nil end
    local body, why3 = conn:receive(n + 2, 2)   -- the value and its \r\n
    if not body then error("value: " .. why3, 0) end
    return body:sub(1, n)
  end
  return rest
end

local users = 0

swarmer.user("KvUser", {
  host = "tcp://127.0.0.1:6400",   -- -H overrides; tls://host:port for TLS
  wait_time = swarmer.between(0.05, 0.1),
  on_start = function(self)
    users = users + 1
    self.key = "user:" .. swarmer.runner.shard .. ":" .. users
  end,
  on_stop = function(self)
    if self.conn then self.conn:close() end
  end,
  tasks = {
    swarmer.task("set", 1, function(self) self:kv("SET", "SET " .. self.key .. " hello") end),
    swarmer.task("get", 3, function(self) self:kv("GET", "GET " .. self.key) end),
    swarmer.task("incr", 1, function(self) self:kv("INCR", "INCR " .. self.key .. ":visits") end),
  },
  -- Send one command, timed as `kv NAME`; connect first when needed, and
  -- drop the connection after a failure (it is recorded).
  kv = function(self, name, line)
    if not self.conn then
      local conn, why = self.client:tcp()   -- the user's host
      if not conn then
        self.client:fire_request{ request_type = "kv", name = "connect", response_time = 0, exception = why }
        return
      end
      self.conn = conn
    end
    local ok = pcall(self.client.measure, self.client, "kv", name, function() return command(self.conn, line) end)
    if not ok then
      self.conn:close()
      self.conn = nil
    end
  end,
})
