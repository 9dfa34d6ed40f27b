-- WebSocket and Server-Sent Events: chatters keep a WebSocket open and
-- time request/reply pairs over it; followers subscribe to an event
-- stream and read it to its end. Against the built-in target:
--   swarmer target &
--   swarmer -f examples/lua/live/plan.lua -H http://127.0.0.1:8080 -u 20 -r 10 -t 30s --headless
-- Rows: `WS /ws` (openings), `WSR echo` (pairs, send to reply),
-- `SSE /sse` (subscriptions) and `SSE event price` (each event, timed
-- since the one before). With -H https://... the same plan uses wss://.
local swarmer = require("swarmer")

swarmer.user("Chatter", {
  weight = 3,
  wait_time = swarmer.between(0.2, 0.4),
  on_start = function(self)
    self.ws = self.client:websocket("/ws", { name = "/ws" })
  end,
  on_stop = function(self)
    if self.ws then self.ws:close() end
  end,
  tasks = {
    say = function(self)
      if not self.ws then  -- the opening failed (recorded): try again
        self.ws = self.client:websocket("/ws", { name = "/ws" })
        return
      end
      local reply = self.ws:request("hello", { name = "echo", timeout = 2 })
      if reply == nil then  -- failed (recorded): reopen next time
        self.ws:close()
        self.ws = nil
      end
    end,
  },
})

swarmer.user("Follower", {
  weight = 1,
  wait_time = swarmer.constant(0.5),
  tasks = {
    follow = function(self)
      local prices = self.client:sse("/sse?count=5&interval_ms=50&event=price", { name = "/sse" })
      if prices == nil then return end
      while prices:receive(2) do end
      prices:close()
    end,
  },
})
