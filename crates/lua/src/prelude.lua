-- The `swarmer` module as plans see it. The parts that wait (sleep, HTTP)
-- are added from Rust; everything else is plain Lua so that errors point at
-- the plan's own lines.
local swarmer = {}
-- The request methods of `self.client` (get ... options), C functions
-- from crates/lua/src/raw/requests.rs that yield straight to the driver.
-- The operation codes they yield last, which Lua code cannot make.
-- The parts of the debug library the prelude needs (the library itself
-- is out of the plans' reach): plans get locations for error messages and
-- tracebacks for exceptions through it, indirectly.
local request_methods, OP_REQUEST, OP_SLEEP, OP_AWAIT, debug = ...

local getinfo, traceback = debug.getinfo, debug.traceback
-- Responses keep their values as user values of a userdata (see below).
local getuservalue, setuservalue = debug.getuservalue, debug.setuservalue
-- Every metatable below is sealed (`__metatable`): a plan can neither read
-- nor replace it (`getmetatable(response).__index = ...` would change
-- every later response of the shard). The prelude compares metatables
-- with the debug library's raw getter.
local metatable_of = debug.getmetatable
local SEALED = "swarmer: this metatable is protected"

-- Control flow: raised as errors carrying this metatable; the runner maps
-- them to Locust's StopUser, StopTest, InterruptTaskSet, RescheduleTask.
local CONTROL = { __metatable = SEALED }
swarmer._CONTROL = CONTROL
local function control(kind, reschedule)
  return setmetatable({ kind = kind, reschedule = reschedule }, CONTROL)
end
function swarmer.stop_user() error(control("stop_user"), 0) end
function swarmer.stop_test() error(control("stop_test"), 0) end
function swarmer.interrupt(reschedule)
  if reschedule == nil then reschedule = true end
  error(control("interrupt", reschedule), 0)
end
function swarmer.reschedule() error(control("reschedule"), 0) end
function swarmer.reschedule_now() error(control("reschedule_now"), 0) end

-- Wait times.
local WAIT = { __metatable = SEALED }
swarmer._WAIT = WAIT
local function seconds(fname, value, what)
  if type(value) ~= "number" or value ~= value or value < 0 then
    error(("%s: %s must be a non-negative number of seconds, got %s"):format(fname, what, tostring(value)), 3)
  end
end
function swarmer.between(min, max)
  seconds("between", min, "min"); seconds("between", max, "max")
  if min > max then error(("between(%s, %s): min must not exceed max"):format(min, max), 2) end
  return setmetatable({ kind = "between", min, max }, WAIT)
end
function swarmer.constant(t) seconds("constant", t, "the wait"); return setmetatable({ kind = "constant", t }, WAIT) end
function swarmer.constant_pacing(t)
  seconds("constant_pacing", t, "the period"); return setmetatable({ kind = "constant_pacing", t }, WAIT)
end
function swarmer.constant_throughput(n)
  if type(n) ~= "number" or not (n > 0) then
    error(("constant_throughput: expected a positive number of tasks per second, got %s"):format(tostring(n)), 2)
  end
  return setmetatable({ kind = "constant_throughput", n }, WAIT)
end

-- Tasks and task sets.
local TASK, TASKSET = { __metatable = SEALED }, { __metatable = SEALED }
swarmer._TASK, swarmer._TASKSET = TASK, TASKSET
local function where(level)
  local info = getinfo(level + 1, "Sl")
  return info and (info.short_src .. ":" .. info.currentline) or "?"
end
local function check_weight(weight, level)
  if math.type(weight) ~= "integer" or weight < 0 then
    error(("task weight must be a non-negative integer, got %s"):format(tostring(weight)), level + 1)
  end
end
local function check_tags(tags, level)
  if type(tags) ~= "table" then error("tags must be a list of strings", level + 1) end
  for _, t in ipairs(tags) do
    if type(t) ~= "string" then error("tags must be a list of strings, got " .. tostring(t), level + 1) end
  end
end

-- Typos in definitions are errors that suggest the field meant; fields
-- that are no typo (data and helper functions) stay on the definition and
-- users read them through `self`. Locust 0.x names get what replaced them.
local function typo_distance(a, b)
  -- Optimal string alignment: a swapped pair of letters counts once.
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:sub(i, i) == b:sub(j - 1, j - 1) and a:sub(i - 1, i - 1) == b:sub(j, j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end
local LEGACY = {
  min_wait = "Locust 0.x's min_wait/max_wait (milliseconds) are not used: write wait_time = swarmer.between(min, max) "
    .. "(seconds)",
  max_wait = "Locust 0.x's min_wait/max_wait (milliseconds) are not used: write wait_time = swarmer.between(min, max) "
    .. "(seconds)",
  wait_function = "Locust 0.x's wait_function is not used: write wait_time = function(self) return seconds end",
  task_set = "Locust 0.x's task_set is not used: list task sets in tasks = { swarmer.task_set(...) }",
}
local function check_fields(what, def, known, level)
  for key in pairs(def) do
    if type(key) == "string" and not known[key] then
      if LEGACY[key] then error(what .. ": " .. LEGACY[key], level + 1) end
      local best, best_distance
      for name in pairs(known) do
        local distance = typo_distance(key:lower(), name)
        if distance < (best_distance or math.huge) or (distance == best_distance and name < best) then
          best, best_distance = name, distance
        end
      end
      -- One edit (or a swapped pair) away, two for long names; a plural of
      -- a known field (`hosts`, `names`) is taken as data of its own.
      local plural = known[key:sub(1, -2)] and key:sub(-1) == "s"
      if best and not plural and (best_distance <= 1 or (best_distance == 2 and #key >= 7)) then
        error(("%s: unknown field %s (did you mean %s?)"):format(what, key, best), level + 1)
      end
    end
  end
end
-- A `tasks` list: functions (named by their key, or by where they are),
-- swarmer.task{...} entries and task sets.
local function check_tasks(what, tasks, level)
  for key, entry in pairs(tasks) do
    local mt = metatable_of(entry)
    if type(entry) ~= "function" and mt ~= TASK and mt ~= TASKSET then
      local shown = type(entry) == "string" and ("the string %q"):format(entry) or ("a " .. type(entry))
      error(("%s: tasks[%s] is %s; a task is a function, swarmer.task{...} or a task set"):format(
        what, type(key) == "string" and ("%q"):format(key) or tostring(key), shown), level + 1)
    end
  end
end

--- swarmer.task(fn) | task(name, fn) | task(name, weight, fn) | task{name=, weight=, tags=, run=}
function swarmer.task(a, b, c)
  local t
  if type(a) == "table" and metatable_of(a) == nil then
    check_fields("swarmer.task", a, { name = true, weight = true, tags = true, run = true }, 2)
    t = { name = a.name, weight = a.weight or 1, tags = a.tags or {}, run = a.run or a[1] }
  elseif type(a) == "function" then
    t = { weight = 1, run = a, tags = {} }
  elseif c == nil then
    t = { name = a, weight = 1, run = b, tags = {} }
  else
    t = { name = a, weight = b, run = c, tags = {} }
  end
  if type(t.run) ~= "function" and metatable_of(t.run) ~= TASKSET then
    error("swarmer.task: expected a function (or a task set) to run, got " .. type(t.run), 2)
  end
  if t.name ~= nil and type(t.name) ~= "string" then error("swarmer.task: name must be a string", 2) end
  check_weight(t.weight, 2)
  check_tags(t.tags, 2)
  t.where = where(2)
  return setmetatable(t, TASK)
end

local SET_FIELDS = { tasks = true, wait_time = true, on_start = true, on_stop = true, weight = true, tags = true }
local function make_set(fname, name, def, sequential)
  if type(name) ~= "string" then error(fname .. ": expected a name, then a definition table", 3) end
  if type(def) ~= "table" or type(def.tasks) ~= "table" then
    error(fname .. "(" .. name .. "): the definition needs a `tasks` list", 3)
  end
  local what = fname .. "(" .. name .. ")"
  check_fields(what, def, SET_FIELDS, 2)
  check_tasks(what, def.tasks, 2)
  -- Other fields (helpers such as `login`, data) are the set's own:
  -- its tasks reach them through `self`, before the user's.
  local own = {}
  for key, value in pairs(def) do
    if not SET_FIELDS[key] then own[key] = value end
  end
  local set = { name = name, tasks = def.tasks, wait_time = def.wait_time, on_start = def.on_start,
                on_stop = def.on_stop, sequential = sequential, weight = def.weight or 1, tags = def.tags or {},
                own = own }
  check_weight(set.weight, 3)
  check_tags(set.tags, 3)
  return setmetatable(set, TASKSET)
end
function swarmer.task_set(name, def) return make_set("swarmer.task_set", name, def, false) end
function swarmer.sequential_task_set(name, def) return make_set("swarmer.sequential_task_set", name, def, true) end

-- User classes, in the order they are registered.
swarmer._users = {}
local USER_FIELDS = { tasks = true, weight = true, fixed_count = true, host = true, wait_time = true, on_start = true,
                      on_stop = true, name = true, connections = true }
-- `connections = { max = n }`: at most n connections per user (its
-- concurrent requests wait); `{ max = n, shared = true }`: the class's
-- users share n connections per process.
local function check_connections(what, c, level)
  if c == nil then return end
  if type(c) ~= "table" then error(what .. ": connections must be a table { max = n, shared = true|false }", level + 1) end
  check_fields(what .. ".connections", c, { max = true, shared = true }, level + 1)
  if math.type(c.max) ~= "integer" or c.max < 1 then
    error(what .. ": connections.max must be a positive integer, got " .. tostring(c.max), level + 1)
  end
  if c.shared ~= nil and type(c.shared) ~= "boolean" then
    error(what .. ": connections.shared must be true or false", level + 1)
  end
end
local registered = {}
function swarmer.user(name, def)
  if type(name) ~= "string" or name == "" then error("swarmer.user: expected a class name, then a definition table", 2) end
  if type(def) ~= "table" then error("swarmer.user(" .. name .. "): expected a definition table", 2) end
  if registered[name] then error("swarmer.user: a user class named " .. name .. " already exists", 2) end
  if def.weight ~= nil and (math.type(def.weight) ~= "integer" or def.weight < 0) then
    error("swarmer.user(" .. name .. "): weight must be a non-negative integer", 2)
  end
  if def.fixed_count ~= nil and (math.type(def.fixed_count) ~= "integer" or def.fixed_count < 0) then
    error("swarmer.user(" .. name .. "): fixed_count must be a non-negative integer", 2)
  end
  if def.host ~= nil and type(def.host) ~= "string" then error("swarmer.user(" .. name .. "): host must be a string", 2) end
  local wt = def.wait_time
  if wt ~= nil and metatable_of(wt) ~= WAIT and type(wt) ~= "function" then
    error("swarmer.user(" .. name .. "): wait_time must be swarmer.between(...), constant(...), constant_pacing(...), "
      .. "constant_throughput(...) or a function returning seconds", 2)
  end
  if type(def.tasks) ~= "table" then error("swarmer.user(" .. name .. "): the definition needs a `tasks` list", 2) end
  check_fields("swarmer.user(" .. name .. ")", def, USER_FIELDS, 2)
  check_connections("swarmer.user(" .. name .. ")", def.connections, 2)
  check_tasks("swarmer.user(" .. name .. ")", def.tasks, 2)
  registered[name] = true
  def.name = name
  def.where = where(2)
  table.insert(swarmer._users, def)
  return def
end

-- Thresholds the plan brings (as `--threshold`, judged with those of the
-- command line): swarmer.threshold("p95<300ms"), swarmer.threshold("[/login] p99<1s abort").
-- Checked when the plan loads; a bad one is an error at its line.
swarmer._thresholds = {}
function swarmer.threshold(expression)
  if type(expression) ~= "string" then
    error("swarmer.threshold: expected an expression such as \"p95<300ms\", got a " .. type(expression), 2)
  end
  table.insert(swarmer._thresholds, { expression = expression, where = where(2) })
end

-- Custom command-line options (Locust's init_command_line_parser):
-- swarmer.add_option{ name = "my-option", default = "x", help = "...", type = "string"|"number"|"boolean",
--                     choices = { "x", "y" } }
-- declares `--my-option` (shown in `swarmer -f plan.lua --help`); its value
-- is swarmer.options.my_option. With `choices` (Locust's choices=), only
-- those values are accepted, and the web UI's form offers them in a list.
swarmer._options = {}
-- Values are looked up on every read (not copied at load), so a value set
-- in the web UI's start form reaches the next test's users.
local option_specs = {}
local function option_value(spec)
  local given = swarmer._option_value(spec.name)
  if given == nil then return spec.default end
  if spec.kind == "number" then
    local n = tonumber(given)
    if n == nil then error(("--%s: expected a number, got %q"):format(spec.name, given), 3) end
    return n
  elseif spec.kind == "boolean" then
    return given == "true"
  end
  return given
end
swarmer.options = setmetatable({}, {
  __metatable = SEALED,
  __index = function(_, key)
    local spec = option_specs[key]
    if spec then return option_value(spec) end
  end,
  __newindex = function(_, key)
    error("swarmer.options." .. tostring(key) .. " is read-only: declare options with swarmer.add_option", 2)
  end,
})
function swarmer.add_option(spec)
  if type(spec) ~= "table" or type(spec.name) ~= "string" or not spec.name:match("^[%a][%w%-]*$") then
    error("swarmer.add_option: expected { name = \"my-option\", default = ..., help = ..., type = ... }", 2)
  end
  local kind = spec.type or (type(spec.default) == "number" and "number")
    or (type(spec.default) == "boolean" and "boolean") or "string"
  if kind ~= "string" and kind ~= "number" and kind ~= "boolean" then
    error("swarmer.add_option(" .. spec.name .. "): type must be string, number or boolean", 2)
  end
  local choices = {}
  if spec.choices ~= nil then
    if type(spec.choices) ~= "table" or kind == "boolean" then
      error("swarmer.add_option(" .. spec.name .. "): choices must be a list of strings or numbers", 2)
    end
    for i, choice in ipairs(spec.choices) do
      if type(choice) ~= "string" and type(choice) ~= "number" then
        error(("swarmer.add_option(%s): choice %d is a %s, not a string or number"):format(spec.name, i, type(choice)), 2)
      end
      choices[i] = tostring(choice)
    end
    local default = spec.default ~= nil and tostring(spec.default) or nil
    if default ~= nil and default ~= "" and #choices > 0 then
      local found = false
      for _, choice in ipairs(choices) do found = found or choice == default end
      if not found then
        error(("swarmer.add_option(%s): the default %q is not one of the choices (%s)"):format(spec.name, default,
          table.concat(choices, ", ")), 2)
      end
    end
  end
  table.insert(swarmer._options, { name = spec.name, help = spec.help or "", type = kind, choices = choices,
                                    default = spec.default ~= nil and tostring(spec.default) or nil })
  local key = spec.name:gsub("%-", "_")
  local entry = { name = spec.name, kind = kind, default = spec.default }
  option_specs[key] = entry
  return option_value(entry)
end

-- Everything that waits yields to Swarmer's driver (crates/lua/src/driver.rs)
-- its operands, then an operation code; the driver does the work as async
-- Rust and resumes the coroutine with the result, or with (nil, message)
-- on error.
local yield = coroutine.yield

function swarmer.sleep(seconds)
  local _, err = yield(seconds, OP_SLEEP)
  if err then error(err, 2) end
end

-- `self.client`: a table holding the client's number in this VM (at [1]);
-- requests yield to the driver, the rest calls into Rust with the number.
local CLIENT = { __metatable = SEALED }
CLIENT.__index = CLIENT

-- Responses: the driver resumes a request with a userdata whose user
-- values are (see crates/lua/src/responses.rs): 1 its parts {status code,
-- body, headers as "name: value" lines, final URL}, which responses with
-- the same parts share, 2 elapsed seconds, 3 the headers table once made,
-- 4 error, 5 catch number, 6 client; with this metatable
-- (`swarmer._RESPONSE`), through which fields are read.
local RESPONSE_METHODS = {}
local PARTS = { status_code = 1, text = 2, content = 2, url = 4 }
local OWN = { elapsed = 2, error = 4 }
local RESPONSE = { __name = "response", __metatable = SEALED, __index = function(r, key)
  local i = PARTS[key]
  if i then return getuservalue(r, 1)[i] end
  i = OWN[key]
  if i then return (getuservalue(r, i)) end
  if key == "ok" then
    local status = getuservalue(r, 1)[1]
    return getuservalue(r, 4) == nil and not (status >= 400 and status < 600)
  end
  if key == "headers" then
    local headers = getuservalue(r, 3)
    if headers == nil then
      headers = {}
      for name, value in getuservalue(r, 1)[3]:gmatch("([^:\n]*): ([^\n]*)\n") do
        local seen = headers[name]
        headers[name] = seen and (seen .. ", " .. value) or value
      end
      setuservalue(r, headers, 3)
    end
    return headers
  end
  return RESPONSE_METHODS[key]
end }
local function check_response(r, fname)
  if metatable_of(r) ~= RESPONSE then
    error(("%s: call it with a colon: response:%s()"):format(fname, fname), 3)
  end
end
function RESPONSE_METHODS.json(r)
  check_response(r, "json")
  local ok, value = pcall(swarmer.json_decode, getuservalue(r, 1)[2])
  if not ok then error("response body is not JSON: " .. tostring(value):gsub("^json_decode: ", ""), 2) end
  return value
end
local function verdict(r, fname, failure)
  local seq = getuservalue(r, 5)
  if not seq then error(fname .. "() needs catch_response = true", 3) end
  swarmer._verdict(getuservalue(r, 6), seq, failure)
end
function RESPONSE_METHODS.success(r)
  check_response(r, "success")
  verdict(r, "success", nil)
end
function RESPONSE_METHODS.failure(r, message)
  check_response(r, "failure")
  if message == nil then message = "failure" end
  verdict(r, "failure", tostring(message))
end

swarmer._RESPONSE = RESPONSE

-- `get` ... `options` yield straight to the driver from C (this is the
-- path every request takes); `request` sends the method's name instead of
-- its number in that list (the driver's `METHODS`).
for code, name in ipairs({ "get", "post", "put", "patch", "delete", "head", "options" }) do
  CLIENT[name] = request_methods[code]
end
function CLIENT.request(client, method, url, opts)
  local r, err = yield(client, url, opts, client[1], tostring(method):upper(), OP_REQUEST)
  if r == nil then error(err, 2) end
  return r
end
function CLIENT.fire_request(client, t) return swarmer._fire_request(client[1], t) end
-- `self.client:grpc("package.Service/Method", message, { name =, metadata =,
-- timeout =, host = })`: a unary gRPC call over the user's own HTTP/2
-- connection to the host (h2c), its messages described by the .proto
-- files given to swarmer.grpc.load. Returns { ok, code, status, message,
-- reply, metadata, elapsed }; recorded as a `grpc` request.
function CLIENT.grpc(client, method, message, opts)
  if type(method) ~= "string" then error("client:grpc: expected a method name (package.Service/Method)", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("client:grpc: options must be a table", 2) end
  if not coroutine.isyieldable() then
    error("client:grpc: cannot wait here (a request listener, or a function called from C such as a sort "
      .. "comparator); call it from a task, on_start, or a coroutine of swarmer.spawn", 2)
  end
  local id, err = swarmer._grpc_start(client[1], method, message, opts)
  if not id then error("client:grpc: " .. err, 2) end
  local r, err2 = yield(id, OP_AWAIT)
  if r == nil then error("client:grpc: " .. tostring(err2), 2) end
  return r
end
-- WebSocket and Server-Sent Events (crate::realtime). Openings and the
-- request/reply pairs of ws:request are recorded (WS, WSR, SSE rows), as
-- is each event received; failures come back as nil and a message.
local function must_wait(what)
  if not coroutine.isyieldable() then
    error(what .. ": cannot wait here (a request listener, or a function called from C such as a sort "
      .. "comparator); call it from a task, on_start, or a coroutine of swarmer.spawn", 3)
  end
end
local function await(what, id, err)
  if not id then error(what .. ": " .. err, 3) end
  return yield(id, OP_AWAIT)
end
local WEBSOCKET, EVENTS, TCP = {}, {}, {}
WEBSOCKET.__index, EVENTS.__index, TCP.__index = WEBSOCKET, EVENTS, TCP
-- A connection whose object is garbage closes.
local function forget(conn) swarmer._live_forget(conn._client, conn._id) end
WEBSOCKET.__gc, EVENTS.__gc, TCP.__gc = forget, forget, forget
local function opener(what, open, class, optional)
  return function(client, url, opts)
    if optional and url == nil then -- the user's host
    elseif type(url) ~= "string" then error(what .. ": expected " .. (optional and "an address" or "a URL or a path"), 2) end
    if opts ~= nil and type(opts) ~= "table" then error(what .. ": options must be a table", 2) end
    must_wait(what)
    local r, err = await(what, swarmer[open](client[1], url, opts))
    if r == nil then return nil, err end
    if r.refused then return nil, r.refused end
    return setmetatable({ _client = client[1], _id = r.id, _timeout = r.timeout, url = r.url,
                          status = r.status, protocol = r.protocol }, class)
  end
end
-- `self.client:websocket(url, { name =, headers =, protocols =, timeout = })`
CLIENT.websocket = opener("client:websocket", "_ws_open", WEBSOCKET)
-- `self.client:sse(url, { name =, headers =, last_event_id =, timeout = })`
CLIENT.sse = opener("client:sse", "_sse_open", EVENTS)
local function send(ws, data, binary, what)
  if type(data) ~= "string" then error(what .. ": expected a string", 3) end
  must_wait(what)
  local r, err = await(what, swarmer._live_send(ws._client, ws._id, data, binary))
  if r == nil then return nil, err end
  return true
end
function WEBSOCKET.send(ws, text) return send(ws, text, false, "websocket:send") end
function WEBSOCKET.send_binary(ws, bytes) return send(ws, bytes, true, "websocket:send_binary") end
local function receive(conn, timeout, what, wanted)
  if timeout ~= nil and type(timeout) ~= "number" then error(what .. ": the timeout is in seconds", 3) end
  must_wait(what)
  local r, err = await(what, swarmer._live_receive(conn._client, conn._id, timeout, wanted))
  if r == nil then return nil, err end
  return r
end
-- ws:receive(timeout): data and "text" or "binary"; nil and "timeout";
-- nil, "closed", code, reason; nil and what broke.
function WEBSOCKET.receive(ws, timeout)
  local r, err = receive(ws, timeout, "websocket:receive")
  if r == nil then return nil, err end
  if r.kind == "text" or r.kind == "binary" then return r.data, r.kind end
  return nil, r.kind, r.code, r.reason
end
-- ws:request(message, { name =, timeout =, binary =, match = function(data, kind) }):
-- send, then wait for the first reply `match` accepts; recorded as WSR.
function WEBSOCKET.request(ws, message, opts)
  if opts ~= nil and type(opts) ~= "table" then error("websocket:request: options must be a table", 2) end
  opts = opts or {}
  if opts.match ~= nil and type(opts.match) ~= "function" then error("websocket:request: match must be a function", 2) end
  local timeout = opts.timeout or ws._timeout
  if type(timeout) ~= "number" or timeout <= 0 then error("websocket:request: the timeout is in seconds", 2) end
  local started = swarmer._clock()
  local ok, err = send(ws, message, opts.binary and true or false, "websocket:request")
  local data, kind
  while ok do
    local left = timeout - (swarmer._clock() - started)
    if left <= 0 then err = "timed out after " .. timeout .. " s"; break end
    data, kind = ws:receive(left)
    if data == nil then
      err = (kind == "timeout") and ("timed out after " .. timeout .. " s") or
            (kind == "closed") and "the connection is closed" or kind
      break
    end
    if opts.match == nil or opts.match(data, kind) then break end
  end
  swarmer._fire_request(ws._client, { request_type = "WSR", name = opts.name or "request",
    response_time = (swarmer._clock() - started) * 1000, response_length = err == nil and #data or 0,
    exception = err })
  if err ~= nil then return nil, err end
  return data, kind
end
function WEBSOCKET.close(ws, code, reason)
  if code ~= nil and math.type(code) ~= "integer" then error("websocket:close: the code is an integer", 2) end
  must_wait("websocket:close")
  local r, err = await("websocket:close", swarmer._live_close(ws._client, ws._id, code, reason))
  if r == nil then return nil, err end
  return true
end
-- events:receive(timeout): { event =, data =, id =, retry = }; nil and
-- "timeout" or "ended"; nil and what broke.
function EVENTS.receive(events, timeout)
  local r, err = receive(events, timeout, "events:receive")
  if r == nil then return nil, err end
  if r.kind == "event" then r.kind = nil; return r end
  return nil, r.kind
end
function EVENTS.close(events) swarmer._live_forget(events._client, events._id) end
-- `self.client:tcp("host:port", { tls =, timeout = })` ("tls://host:port"
-- for TLS; no address: the user's host, e.g. -H tcp://host:port): bytes for a protocol of the plan's own; nothing is recorded,
-- the plan times its exchanges (self.client:measure). Receives give the
-- bytes, or nil and "timeout", "closed" or what broke.
CLIENT.tcp = opener("client:tcp", "_tcp_open", TCP, true)
function TCP.send(conn, bytes) return send(conn, bytes, true, "tcp:send") end
local function take(conn, timeout, what, wanted)
  local r, err = receive(conn, timeout, what, wanted)
  if r == nil then return nil, err end
  if r.kind == "binary" then return r.data end
  return nil, r.kind
end
function TCP.receive_line(conn, timeout) return take(conn, timeout, "tcp:receive_line", "line") end
function TCP.receive(conn, n, timeout)
  if math.type(n) ~= "integer" or n <= 0 then error("tcp:receive: expected a count of bytes above 0", 2) end
  return take(conn, timeout, "tcp:receive", n)
end
function TCP.receive_any(conn, timeout) return take(conn, timeout, "tcp:receive_any", "any") end
function TCP.close(conn)
  must_wait("tcp:close")
  local r, err = await("tcp:close", swarmer._live_close(conn._client, conn._id))
  if r == nil then return nil, err end
  return true
end
-- `self.client:grpc_stream(method, { name =, metadata =, timeout =, host =,
-- compression =, channel = })`: an interactive call. stream:send(message)
-- (true, or nil and why), stream:receive(timeout) (a reply; nil and
-- "ended", "timeout" or "closed"), stream:close_send(), stream:finish()
-- (the outcome, as client:grpc's, with `received`; the call is recorded
-- then, once).
local GRPC_STREAM = {}
GRPC_STREAM.__index, GRPC_STREAM.__gc = GRPC_STREAM, forget
function CLIENT.grpc_stream(client, method, opts)
  if type(method) ~= "string" then error("client:grpc_stream: expected a method name (package.Service/Method)", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("client:grpc_stream: options must be a table", 2) end
  local id, err = swarmer._grpc_open(client[1], method, opts)
  if not id then error("client:grpc_stream: " .. err, 2) end
  return setmetatable({ _client = client[1], _id = id, method = method }, GRPC_STREAM)
end
function GRPC_STREAM.send(stream, message)
  if type(message) ~= "table" then error("grpc_stream:send: the message must be a table", 2) end
  must_wait("grpc_stream:send")
  local id, err = swarmer._grpc_send(stream._client, stream._id, message)
  if not id then
    if err == "the stream is finished" or err == "the user has stopped" then return nil, err end
    error("grpc_stream:send: " .. err, 2)
  end
  local r, err2 = yield(id, OP_AWAIT)
  if r == nil then return nil, err2 end
  return true
end
function GRPC_STREAM.receive(stream, timeout)
  local r, err = receive(stream, timeout, "grpc_stream:receive")
  if r == nil then return nil, err end
  if r.kind == "reply" then return r.reply end
  return nil, r.kind
end
function GRPC_STREAM.close_send(stream) swarmer._grpc_close_send(stream._client, stream._id) end
function GRPC_STREAM.finish(stream)
  must_wait("grpc_stream:finish")
  local r, err = await("grpc_stream:finish", swarmer._grpc_finish(stream._client, stream._id))
  if r == nil then error("grpc_stream:finish: " .. tostring(err), 2) end
  return r
end
swarmer.grpc = {}
-- `swarmer.grpc.load("file.proto", { includes = { "dir", ... } })`: read a
-- .proto file (beside the plan unless the path is absolute) and the files
-- it imports; its services can then be called with client:grpc.
-- `swarmer.grpc.reflect("http://host:port", { timeout = 10 })`: ask the
-- server for its services by reflection (no .proto needed); returns their
-- names. At the plan's top level: it waits for the answer.
function swarmer.grpc.reflect(host, opts)
  if type(host) ~= "string" then error("swarmer.grpc.reflect: expected the server's address (http://host:port)", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("swarmer.grpc.reflect: options must be a table", 2) end
  local services, err = swarmer._grpc_reflect(host, opts and opts.timeout)
  if not services then error("swarmer.grpc.reflect: " .. err, 2) end
  return services
end
function swarmer.grpc.load(file, opts)
  if type(file) ~= "string" then error("swarmer.grpc.load: expected a .proto file name", 2) end
  local includes = opts and opts.includes
  if includes ~= nil and type(includes) ~= "table" then
    error("swarmer.grpc.load: includes must be a list of directories", 2)
  end
  local err = swarmer._grpc_load(file, includes)
  if err then error("swarmer.grpc.load: " .. err, 2) end
end
-- A client outside users (listeners, message handlers, background
-- coroutines): swarmer.http_client{ host = "http://...", record = true }.
-- Without a host it uses the test's; its requests are recorded in the
-- statistics only with record = true. Its connections and cookies go when
-- it is garbage.
local HOOK_CLIENT = { __index = CLIENT, __metatable = SEALED,
                      __gc = function(client) swarmer._drop_client(client[1]) end }
local CLIENT_OPTIONS = { host = "string", record = "boolean" }
function swarmer.http_client(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("swarmer.http_client: expected { host = ..., record = ... }", 2) end
  for key, value in pairs(opts) do
    local want = CLIENT_OPTIONS[key]
    if not want then
      error(("swarmer.http_client: unknown option %s (options: host, record)"):format(tostring(key)), 2)
    elseif type(value) ~= want then
      error(("swarmer.http_client: %s must be a %s, got %s"):format(key, want, type(value)), 2)
    end
  end
  local id, err = swarmer._new_client(opts.host, opts.record == true)
  if not id then error("swarmer.http_client: " .. err, 2) end
  return setmetatable({ id }, HOOK_CLIENT)
end
function CLIENT.measure(client, request_type, name, fn)
  local started = swarmer._clock()
  local ok, err = pcall(fn)
  swarmer._fire_request(client[1], { request_type = request_type, name = name,
                                      response_time = (swarmer._clock() - started) * 1000,
                                      exception = (not ok) and tostring(err) or nil })
  if not ok then error(err, 0) end
end

-- What this process is: role "local", "master" or "worker" (with its
-- `worker_id`), `shard` (0-based) and `shards`, and `process` (true in the
-- process VM, where listeners run); set from Rust for each VM.
-- `swarmer.runner.workers()` lists the connected workers (on a master).
-- `user_count` and `target_user_count` are read live (Locust's
-- runner.user_count and runner.target_user_count).
-- `process_exit_code` (Locust's environment.process_exit_code) chooses
-- the exit code, typically in a `quitting` listener.
local LIVE_RUNNER = { user_count = true, target_user_count = true }
swarmer.runner = setmetatable({ role = "local", shard = 0, shards = 1 }, {
  __index = function(_, key)
    if LIVE_RUNNER[key] then return swarmer.stats()[key] end
    if key == "process_exit_code" then return swarmer._exit_code() end
  end,
  __newindex = function(runner, key, value)
    if key == "process_exit_code" then
      if value ~= nil and math.type(value) ~= "integer" then
        error("swarmer.runner.process_exit_code: expected an integer or nil, got " .. tostring(value), 2)
      end
      return swarmer._exit_code(value, value == nil)
    end
    if LIVE_RUNNER[key] then error("swarmer.runner." .. key .. " is read-only", 2) end
    rawset(runner, key, value)
  end,
})

-- `swarmer.runner.set_load{ users = n, spawn_rate = r, mix = { Class = weight, ... } }`
-- (or `counts = { Class = n, ... }` instead of users and mix): start a test
-- with this load, or change the running one. Users move between classes
-- at the spawn rate; classes with a fixed_count keep it; classes not
-- named get none. On a master it sets the whole test's load; a worker
-- ignores it (its master decides).
-- With `arrival_rate = r` (iterations per second, or "600/m") the load is
-- the open model instead: iterations start at that rate, served by a pool
-- of `users` (pre-allocated) that may grow to `max_users`; `arrival_stages
-- = "30s:300,1m:0"` ramps the rate from there, as --arrival-stages does.
-- spawn_rate is then not needed (the pool starts at once).
-- Set while a shape's tick asks for its load: the runner then shows and
-- marks the step, and ignores it once the load was changed by hand.
local shape_step, shape_label, shape_ends, shape_ramp = nil, nil, nil, nil
function swarmer.runner.set_load(load)
  if type(load) ~= "table" then error("set_load: expected { users = n, spawn_rate = r, mix = {...} }", 2) end
  check_fields("swarmer.runner.set_load", load, { users = true, spawn_rate = true, mix = true, counts = true,
    arrival_rate = true, arrival_stages = true, max_users = true }, 2)
  local arrival = nil
  if load.arrival_rate ~= nil then
    local stages = load.arrival_stages
    if stages ~= nil and type(stages) ~= "string" then
      error("set_load: arrival_stages must be a string like \"30s:300,1m:0\", got " .. type(stages), 2)
    end
    local most = load.max_users
    if most ~= nil and (math.type(most) ~= "integer" or most < 1 or most > 10000000) then
      error("set_load: max_users must be a whole number from 1 to 10000000, got " .. tostring(most), 2)
    end
    arrival = { rate = load.arrival_rate, stages = stages, ramp = shape_ramp, max_users = most }
  else
    for _, key in ipairs({ "arrival_stages", "max_users" }) do
      if load[key] ~= nil then error("set_load: " .. key .. " needs an arrival_rate", 2) end
    end
  end
  local rate = load.spawn_rate
  if arrival and rate == nil then rate = math.huge end
  if type(rate) ~= "number" or rate <= 0 or rate ~= rate then
    error("set_load: spawn_rate must be a number above 0, got " .. tostring(rate), 2)
  end
  if load.mix and load.counts then error("set_load: give mix (weights) or counts, not both", 2) end
  local by_class = load.mix or load.counts
  local known = {}
  for _, def in ipairs(swarmer._users) do known[def.name] = true end
  if by_class ~= nil then
    if type(by_class) ~= "table" then error("set_load: " .. (load.mix and "mix" or "counts") .. " must be a table", 2) end
    for name, n in pairs(by_class) do
      if not known[name] then
        local names = {}
        for k in pairs(known) do names[#names + 1] = k end
        table.sort(names)
        error(("set_load: no user class named %s (classes: %s)"):format(tostring(name), table.concat(names, ", ")), 2)
      end
      -- Weights make a cycle of their sum: keep it small.
      local most = load.mix and 10000 or 10000000
      if math.type(n) ~= "integer" or n < 0 or n > most then
        error(("set_load: %s must be a whole number from 0 to %d, got %s"):format(name, most, tostring(n)), 2)
      end
    end
  end
  local users = load.users
  if load.counts then
    if users ~= nil then error("set_load: with counts, the user count is their sum: leave users out", 2) end
    users = 0
  elseif math.type(users) ~= "integer" or users < 0 or users > 10000000 then
    error("set_load: users must be a whole number from 0 to 10000000, got " .. tostring(users), 2)
  end
  local err = swarmer._set_load(users, rate, load.mix and "weights" or (load.counts and "counts") or nil, by_class,
    shape_step, shape_label, shape_ends, arrival)
  if err then error("set_load: " .. err, 2) end
end

-- Custom messages between master and workers (Locust's register_message /
-- send_message). Data is any JSON-able value; a handler gets (data, from).
local message_handlers = {}
function swarmer.register_message(kind, fn)
  if type(kind) ~= "string" or type(fn) ~= "function" then
    error("register_message: expected (type, function(data, from))", 2)
  end
  message_handlers[kind] = fn
end
function swarmer.send_message(kind, data, to)
  if type(kind) ~= "string" then error("send_message: expected a message type (string)", 2) end
  local text = swarmer.json_encode(data)
  -- As Locust's local runner: a message sent in the process VM of a local
  -- run is handled at once, before the sender goes on (users that start
  -- after a test_start listener sent it see what its handler did).
  if swarmer.runner.role == "local" and swarmer.runner.process and (to == nil or to == "local") then
    local unhandled = swarmer._deliver(kind, text, "local")
    if unhandled then swarmer._warn(unhandled) end
    return
  end
  swarmer._send_message(kind, text, to)
end
function swarmer._deliver(kind, text, from)
  local fn = message_handlers[kind]
  -- As Locust, a message nobody handles is only logged.
  if not fn then return ("no handler for %q messages (swarmer.register_message)"):format(kind) end
  fn(swarmer.json_decode(text), from)
end

-- Data every VM of the plan shares (each shard runs its own VM, and the
-- listeners run in the process VM): swarmer.shared.key = value / value =
-- swarmer.shared.key copy plain data in and out; swarmer.queue(name) is a
-- list whose values each go to exactly one caller on any shard.
swarmer.shared = setmetatable({}, {
  __metatable = SEALED,
  __index = function(_, key)
    if type(key) ~= "string" then error("swarmer.shared: keys are strings, got " .. type(key), 2) end
    return swarmer._shared_get(key)
  end,
  __newindex = function(_, key, value)
    if type(key) ~= "string" then error("swarmer.shared: keys are strings, got " .. type(key), 2) end
    local err = swarmer._shared_set(key, value)
    if err then error("swarmer.shared." .. key .. ": " .. err, 2) end
  end,
})
local QUEUE = { __metatable = SEALED }
QUEUE.__index = QUEUE
function QUEUE.push(q, ...)
  local n, err = swarmer._queue_push(q.name, ...)
  if err then error("queue " .. q.name .. ": push: " .. err, 2) end
  return n
end
-- pop takes the last value (Python's list.pop()), shift the first; nil
-- when the queue is empty.
-- extend pushes every value of a list.
function QUEUE.extend(q, list)
  if type(list) ~= "table" then error("queue " .. q.name .. ": extend: expected a list", 2) end
  local n, err = swarmer._queue_push(q.name, table.unpack(list))
  if err then error("queue " .. q.name .. ": extend: " .. err, 2) end
  return n
end
function QUEUE.pop(q) return swarmer._queue_take(q.name, false) end
function QUEUE.shift(q) return swarmer._queue_take(q.name, true) end
function QUEUE.len(q) return swarmer._queue_len(q.name) end
function QUEUE.clear(q) swarmer._queue_clear(q.name) end
QUEUE.__len = QUEUE.len
function swarmer.queue(name)
  if type(name) ~= "string" then error("swarmer.queue: expected a name (string)", 2) end
  return setmetatable({ name = name }, QUEUE)
end

-- Event hooks, with Locust's names. `request` and `user_error` listeners
-- run in the VM where the request or error happened (each shard has one
-- for its users); all others run once per process, in the process VM.
local Event = { __metatable = SEALED }
Event.__index = Event
function Event:add_listener(fn)
  if type(fn) ~= "function" then error("add_listener: expected a function", 2) end
  table.insert(self._listeners, fn)
  return fn
end
local AVAILABLE = { "init", "test_start", "test_stopping", "test_stop", "quitting", "quit", "spawning_complete",
                    "request", "user_error", "reset_stats", "usage_monitor", "cpu_warning", "heartbeat_sent",
                    "heartbeat_received" }
local events = {}
for _, name in ipairs(AVAILABLE) do events[name] = setmetatable({ name = name, _listeners = {} }, Event) end
swarmer.events = setmetatable(events, { __metatable = SEALED, __index = function(_, k)
  error(("swarmer.events.%s is not available (events: %s)"):format(tostring(k), table.concat(AVAILABLE, ", ")), 2)
end })
-- Run every listener of an event with the event's arguments; returns the
-- error messages of those that failed.
local function on_error(e) return tostring(e) .. "\n" .. traceback(nil, 2) end
-- Load shapes (Locust's LoadTestShape): swarmer.shape(name, { tick = function(run_time, stats) ... end }).
-- `tick` is called when a test starts, then about once a second, with the
-- seconds since the start and swarmer.stats(); it returns users, spawn_rate
-- and optionally a mix of classes by name (weights), or nil to end the test.
-- A fourth value, { name = "warm", ends_at = 30 }, names the step (marked
-- in the charts and reports under that name) and says when it ends (in
-- seconds since the start; the web UI shows the time left).
-- A changed answer is applied with swarmer.runner.set_load; the same answer
-- again changes nothing. The shape runs once per process on the master (or
-- the local runner), never on workers. `--shape NAME` picks one of several.
local shapes, shape_order, shape_generation = {}, {}, 0
function swarmer.shape(name, def)
  if type(name) ~= "string" or name == "" then error("swarmer.shape: expected a name, then { tick = function }", 2) end
  if type(def) ~= "table" then error("swarmer.shape(" .. name .. "): expected { tick = function(run_time, stats) }", 2) end
  check_fields("swarmer.shape(" .. name .. ")", def, { tick = true }, 2)
  if type(def.tick) ~= "function" then error("swarmer.shape(" .. name .. "): tick must be a function", 2) end
  if shapes[name] then error("swarmer.shape: a shape named " .. name .. " already exists", 2) end
  shapes[name] = def
  table.insert(shape_order, name)
  if #shape_order == 1 then
    swarmer.add_option{ name = "shape", default = "", help = "" }
  end
  -- The web UI's start form offers the shapes in a list; the command line
  -- accepts only their names.
  for _, option in ipairs(swarmer._options) do
    if option.name == "shape" then
      option.help = "the load shape (swarmer.shape) that sets users, spawn rate and class mix over time"
        .. (#shape_order == 1 and " (one shape: the default)" or "")
      option.choices = { table.unpack(shape_order) }
    end
  end
end
local function chosen_shape()
  local name = swarmer.options.shape
  if name == nil or name == "" then
    if #shape_order > 1 then
      error("the plan has several shapes (" .. table.concat(shape_order, ", ") .. "): choose one with --shape NAME", 0)
    end
    name = shape_order[1]
  end
  local shape = shapes[name]
  if not shape then error(("--shape %s: the plan has no such shape (shapes: %s)"):format(name,
    table.concat(shape_order, ", ")), 0) end
  return shape, name
end
-- Called once the plan has loaded in the process VM: a --shape that names
-- no shape, or several shapes and none chosen, is refused before any load.
function swarmer._check_shape()
  if #shape_order > 0 and swarmer.runner.role ~= "worker" then chosen_shape() end
end
local function start_shape()
  if #shape_order == 0 or swarmer.runner.role == "worker" or not swarmer.runner.process then return end
  local shape, shape_name = chosen_shape()
  shape_generation = shape_generation + 1
  local mine, started, last = shape_generation, swarmer._clock(), nil
  -- One tick: false when the shape ended the test.
  local function step()
    local users, rate, mix, info = shape.tick(swarmer._clock() - started, swarmer.stats())
    if users == nil then
      print("The load shape ended the test")
      swarmer.quit()
      return false
    end
    local label, ends = nil, nil
    if info ~= nil then
      local what = "swarmer.shape(" .. shape_name .. "): tick's fourth value"
      if type(info) ~= "table" then error(what .. " must be { name = ..., ends_at = ... }, got " .. type(info), 0) end
      local fields = { name = true, ends_at = true, arrival_rate = true, arrival_target = true, max_users = true }
      for key in pairs(info) do
        if not fields[key] then
          error(what .. ": unknown field " .. tostring(key)
            .. " (fields: name, ends_at, arrival_rate, arrival_target, max_users)", 0)
        end
      end
      label, ends = info.name, info.ends_at
      if label ~= nil and (type(label) ~= "string" or label == "") then
        error(what .. ": name must be a non-empty string, got " .. tostring(label), 0)
      end
      if ends ~= nil and (type(ends) ~= "number" or ends < 0 or ends ~= ends or ends == math.huge) then
        error(what .. ": ends_at must be a number of seconds from 0, got " .. tostring(ends), 0)
      end
    end
    -- An arrival-rate step: `users` is the pool's pre-allocated users;
    -- `arrival_target` ramps the rate to it by the step's end.
    local arrival_rate, arrival_target, most = nil, nil, nil
    if info ~= nil then arrival_rate, arrival_target, most = info.arrival_rate, info.arrival_target, info.max_users end
    if arrival_target ~= nil and (arrival_rate == nil or ends == nil) then
      error("swarmer.shape(" .. shape_name .. "): tick's fourth value: arrival_target needs an arrival_rate to ramp "
        .. "from and an ends_at to ramp by", 0)
    end
    local key = tostring(users) .. "/" .. tostring(rate) .. "/" .. tostring(label) .. "/" .. tostring(ends) .. "/"
      .. tostring(arrival_rate) .. "/" .. tostring(arrival_target) .. "/" .. tostring(most)
    if type(mix) == "table" then
      local names = {}
      for k in pairs(mix) do names[#names + 1] = tostring(k) end
      table.sort(names)
      for _, k in ipairs(names) do key = key .. "/" .. k .. "=" .. tostring(mix[k]) end
    end
    if key ~= last then
      last = key
      shape_step, shape_label, shape_ends = shape_name, label, ends
      if arrival_target ~= nil then
        shape_ramp = { seconds = math.max(ends - (swarmer._clock() - started), 0), target = arrival_target }
      end
      local ok, err = pcall(swarmer.runner.set_load, { users = users, spawn_rate = rate, mix = mix,
        arrival_rate = arrival_rate, max_users = most })
      shape_step, shape_label, shape_ends, shape_ramp = nil, nil, nil, nil
      if not ok then error(err, 0) end
    end
    return true
  end
  if not step() then return end
  swarmer.spawn(function()
    while true do
      swarmer.sleep(1)
      local state = swarmer.stats().state
      if mine ~= shape_generation or (state ~= "spawning" and state ~= "running") then return end
      if not step() then return end
    end
  end)
end

function swarmer._fire(name, ...)
  local failed = {}
  for _, fn in ipairs(rawget(events, name)._listeners) do
    local ok, err = xpcall(fn, on_error, ...)
    if not ok then table.insert(failed, err) end
  end
  -- The shape's first tick, after the plan's own test_start listeners.
  if name == "test_start" then
    local ok, err = xpcall(start_shape, on_error)
    if not ok then table.insert(failed, err) end
  end
  return failed
end
function swarmer._listener_count(name) return #rawget(events, name)._listeners end
function swarmer._listening(name) return swarmer._listener_count(name) > 0 end

-- The per-user object (`self`): its own fields, then the class's, then
-- these helpers.
local USER_METHODS = {
  stop_user = function(_) swarmer.stop_user() end,
  stop_test = function(_) swarmer.stop_test() end,
  interrupt = function(_, reschedule) swarmer.interrupt(reschedule) end,
  reschedule = function(_) swarmer.reschedule() end,
  sleep = function(_, s) return swarmer.sleep(s) end,
}
-- The `self` of a task set's functions, one per user and set: the set's
-- own fields, then what it was entered from (the user, or the outer set
-- for a nested one). `self.user` is the user, `self.parent` the outer
-- object; fields a set's function writes stay on this object.
function swarmer._set_view(set, parent, user)
  local view = {}
  for key, value in pairs(set.own) do view[key] = value end
  view.user, view.parent = user, parent
  return setmetatable(view, { __metatable = SEALED, __index = parent })
end
function swarmer._new_user(def, client, id)
  local self = { client = setmetatable({ client }, CLIENT), id = id, class_name = def.name }
  return setmetatable(self, { __metatable = SEALED, __index = function(_, k)
    local v = def[k]
    if v ~= nil then return v end
    return USER_METHODS[k]
  end })
end

return swarmer
