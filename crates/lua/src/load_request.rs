//! `swarmer.runner.set_load` on the Rust side: the prelude checks the
//! table's shape; this turns it into the engine's `TestSettings` (users and
//! spawn rate, a class mix, a shape's step, an arrival rate) and asks the
//! runner for it.

use std::collections::BTreeMap;
use std::time::Duration;

use mlua::{Lua, Table, Value};
use swarmer_engine::arrival::{parse_rate, parse_stages};
use swarmer_engine::{ArrivalRate, ClassMix, PlanShapeStep, RateStage, ShardInfo, TestSettings};

use crate::module::caller_location;

/// The arguments of `swarmer._set_load`: users, rate, mix kind, mix by
/// class; then, for a shape's step, the shape's name, the step's name and
/// when it ends (seconds since the shape's start); then the arrival rate
/// (`{ rate =, stages =, ramp = { seconds =, target = }, max_users = }`).
type LoadArgs = (usize, f64, Option<String>, Option<Table>, Option<String>, Option<String>, Option<f64>, Option<Table>);

/// `swarmer.runner.set_load`: ask the runner for `users` at `rate`, with a
/// mix of classes by name (`kind` "weights" or "counts") or the plan's
/// weights, in the closed model or at an arrival rate. Returns what was
/// wrong with the arrival rate, for the prelude to raise at the caller.
pub fn set_load(lua: &Lua, args: LoadArgs) -> mlua::Result<Option<String>> {
    let (users, rate, kind, by_class, shape, label, ends_at, arrival) = args;
    let mut entries = BTreeMap::new();
    if let Some(table) = by_class {
        for pair in table.pairs::<String, usize>() {
            let (name, n) = pair?;
            entries.insert(name, n);
        }
    }
    // With counts, the pool is their sum.
    let pool = if kind.as_deref() == Some("counts") { entries.values().sum() } else { users };
    let arrival = match arrival.map(|table| arrival_rate(&table, pool)).transpose() {
        Ok(arrival) => arrival,
        Err(why) => return Ok(Some(why)),
    };
    let Some(shard) = crate::vm::app_data::<ShardInfo>(lua).filter(|s| !s.probe).map(|s| s.clone()) else {
        return Err(mlua::Error::runtime(format!(
            "{}swarmer.runner.set_load: only available while the plan runs (in a listener, a background \
             coroutine or a task), not while it loads",
            caller_location(lua)
        )));
    };
    let class_mix = match kind.as_deref() {
        Some("weights") => Some(ClassMix::Weights(entries.into_iter().map(|(k, v)| (k, v as u32)).collect())),
        Some("counts") => Some(ClassMix::Counts(entries)),
        _ => None,
    };
    shard.request_load(TestSettings {
        users,
        spawn_rate: rate,
        class_mix,
        shape_step: shape.map(|shape| PlanShapeStep {
            shape,
            label,
            // Checked finite and not negative by the prelude.
            ends_after: ends_at.and_then(|s| Duration::try_from_secs_f64(s).ok()),
        }),
        arrival: arrival.map(Box::new),
        ..Default::default()
    });
    Ok(None)
}

/// The arrival rate of a `set_load` table, `users` its pre-allocated
/// users; or what is wrong, naming the field.
fn arrival_rate(table: &Table, users: usize) -> Result<ArrivalRate, String> {
    let field = |key: &str| table.get::<Value>(key).map_err(|e| format!("{key}: {e}"));
    let start_rate = rate_of("arrival_rate", field("rate")?)?;
    let mut stages = match field("stages")? {
        Value::String(text) => parse_stages(&text.to_string_lossy()).map_err(|e| format!("arrival_stages: {}", e.0))?,
        _ => Vec::new(),
    };
    // A shape's step ramping to `arrival_target` by its end.
    if let Value::Table(ramp) = field("ramp")? {
        let seconds: f64 = ramp.get("seconds").map_err(|e| format!("ends_at: {e}"))?;
        let target = rate_of("arrival_target", ramp.get("target").map_err(|e| format!("arrival_target: {e}"))?)?;
        let duration = Duration::try_from_secs_f64(seconds).map_err(|_| format!("ends_at: {seconds} s"))?;
        stages.push(RateStage { duration, target });
    }
    let max_users = match field("max_users")? {
        Value::Integer(n) => usize::try_from(n).map_err(|_| format!("max_users: {n}"))?,
        _ => users,
    };
    let rate = ArrivalRate { start_rate, stages, pre_allocated: users, max_users };
    rate.check().map_err(|e| format!("users / max_users: {}", e.0))?;
    Ok(rate)
}

/// A rate given as a number (per second) or as text (`"600/m"`).
fn rate_of(key: &str, value: Value) -> Result<f64, String> {
    match value {
        Value::Integer(n) if n >= 0 => Ok(n as f64),
        Value::Number(n) if n.is_finite() && n >= 0.0 => Ok(n),
        Value::String(text) => parse_rate(&text.to_string_lossy()).map_err(|e| format!("{key}: {}", e.0)),
        other => Err(format!(
            "{key}: expected iterations per second (100, \"100/s\", \"600/m\"), got {}",
            other.to_string().unwrap_or_else(|_| other.type_name().to_owned())
        )),
    }
}
