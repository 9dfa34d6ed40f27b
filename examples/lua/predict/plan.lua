-- The seed's comparison: the same text-classification API called over
-- REST (POST /predict) and over gRPC (GetPrediction), by two user classes
-- in one run. Against the built-in target:
--   swarmer target --grpc-bind 127.0.0.1:50051 &
--   swarmer -f examples/lua/predict/plan.lua -H http://127.0.0.1:8080 \
--     --grpc-host http://127.0.0.1:50051 -u 20 -r 10 -t 30s --headless
-- The rows `POST /predict` and `grpc categorization.TextCategorization/GetPrediction`
-- side by side are the comparison (requests/s, percentiles, failures).
local swarmer = require("swarmer")

swarmer.add_option{ name = "grpc-host", default = "http://127.0.0.1:50051",
  help = "where the gRPC half of the prediction API listens (h2c)" }
swarmer.grpc.load("categorization.proto")

local TEXTS = { "the match ended in a draw", "shares fell sharply", "a new phone was announced",
                "the election results are in", "rain expected tomorrow" }

swarmer.user("RestUser", {
  wait_time = swarmer.between(0.9, 1.1),
  tasks = { function(self)
    local r = self.client:post("/predict", { json = { text = swarmer.random.choice(TEXTS) } })
    assert(r.status_code ~= 200 or r:json().category ~= nil, "a reply without a category")
  end },
})

swarmer.user("GrpcUser", {
  wait_time = swarmer.between(0.9, 1.1),
  tasks = { function(self)
    local r = self.client:grpc("categorization.TextCategorization/GetPrediction",
      { text = swarmer.random.choice(TEXTS) }, { host = swarmer.options.grpc_host, timeout = 5 })
    assert(not r.ok or r.reply.category ~= nil, "a reply without a category")
  end },
})
