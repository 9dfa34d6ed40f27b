//! `--phases FILE`: load phases from TOML (or the `[[phases]]` tables of
//! `swarmer.toml`), the seed's load configuration built in. Each phase:
//!
//! ```toml
//! [[phases]]
//! name = "weekday"          # optional: "phase N"
//! duration = "20s"          # or seconds
//! users = 40
//! spawn_rate = 10           # optional: 1, as --spawn-rate
//!
//! arrival_rate = "100/s"    # optional: an arrival-rate phase (open model):
//! arrival_target = 200      #   iterations at this rate, ramping to the
//! max_users = 50            #   target over the phase; users pre-allocated,
//!                           #   the pool grows to max_users (default: users)
//!
//! [[phases.user_types]]     # optional: the plan's weights otherwise
//! name = "Weekday"          # a user class of the plan
//! ratio = 3
//! min_wait_ms = 100         # optional, with max_wait_ms; or
//! max_wait_ms = 200         # wait_time = "between(0.1, 0.2)"
//! ```
//!
//! Errors name the file, the phase and the field. Class names are checked
//! against the plan when the runner starts, before any load. Other keys
//! at the top of the file are left to the config file's reader.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use swarmer_engine::arrival::parse_rate;
use swarmer_engine::timespan::parse_timespan;
use swarmer_engine::{ArrivalRate, Phase, Phases, RateStage, WaitSpec};
use toml::Value;

const PHASE_FIELDS: &[&str] =
    &["name", "duration", "users", "spawn_rate", "user_types", "arrival_rate", "arrival_target", "max_users"];
const TYPE_FIELDS: &[&str] = &["name", "ratio", "min_wait_ms", "max_wait_ms", "wait_time"];

/// Read the phases of `path`.
pub fn read(path: &Path) -> Result<Phases, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--phases {}: {e}", path.display()))?;
    parse(path, &text)
}

/// The phases of a file's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Phases, String> {
    let file = path.display().to_string();
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{file}: {e}"))?;
    let Some(list) = table.get("phases") else {
        return Err(format!("{file}: no [[phases]] tables"));
    };
    let Value::Array(list) = list else {
        return Err(format!("{file}: phases: expected [[phases]] tables, got {}", list.type_str()));
    };
    if list.is_empty() {
        return Err(format!("{file}: no [[phases]] tables"));
    }
    let phases = list
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let name = value.get("name").and_then(Value::as_str).map(str::to_owned);
            let shown = name.clone().unwrap_or_else(|| format!("phase {}", i + 1));
            let at = match &name {
                Some(n) => format!("{file}: phase {} ({n})", i + 1),
                None => format!("{file}: phase {}", i + 1),
            };
            phase(value, shown).map_err(|e| format!("{at}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = phases.iter().find(|p| !seen.insert(p.name.clone())) {
        return Err(format!("{file}: two phases are named {:?}; give each its own name", twice.name));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(file);
    Ok(Phases { name, phases })
}

fn phase(value: &Value, name: String) -> Result<Phase, String> {
    let Value::Table(t) = value else { return Err(format!("expected a table, got {}", value.type_str())) };
    known_fields(t, PHASE_FIELDS)?;
    if let Some(v) = t.get("name")
        && v.as_str().is_none_or(str::is_empty)
    {
        return Err(format!("name: expected a non-empty string, got {v}"));
    }
    let duration = match t.get("duration") {
        None => return Err("duration: missing (\"30s\", \"2m\" or seconds)".into()),
        Some(v) => duration(v).map_err(|e| format!("duration: {e}"))?,
    };
    let users = match t.get("users") {
        None => return Err("users: missing".into()),
        Some(Value::Integer(n)) if *n >= 0 => *n as usize,
        Some(v) => return Err(format!("users: expected a whole number of 0 or more, got {v}")),
    };
    let spawn_rate = match t.get("spawn_rate") {
        None => 1.0,
        Some(v) => match number(v) {
            Some(r) if r.is_finite() && r > 0.0 => r,
            _ => return Err(format!("spawn_rate: expected a number above 0, got {v}")),
        },
    };
    let (mut ratios, mut wait_times) = (BTreeMap::new(), BTreeMap::new());
    if let Some(types) = t.get("user_types") {
        let Value::Array(types) = types else {
            return Err(format!("user_types: expected [[phases.user_types]] tables, got {}", types.type_str()));
        };
        for (j, ty) in types.iter().enumerate() {
            let (class, ratio, wait) = user_type(ty).map_err(|e| format!("user_types[{}]: {e}", j + 1))?;
            if ratios.insert(class.clone(), ratio).is_some() {
                return Err(format!("user_types: {class} is given twice"));
            }
            if let Some(wait) = wait {
                wait_times.insert(class, wait);
            }
        }
    }
    let arrival = arrival(t, duration, users)?;
    Ok(Phase { name, duration, users, spawn_rate, ratios, wait_times, arrival })
}

/// A phase's arrival rate (`arrival_rate`, `arrival_target`, `max_users`),
/// if it has one.
fn arrival(t: &toml::Table, duration: Duration, users: usize) -> Result<Option<ArrivalRate>, String> {
    let rate = |key: &str| -> Result<Option<f64>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => parse_rate(text).map(Some).map_err(|e| format!("{key}: {}", e.0)),
            Some(v) => match number(v) {
                Some(r) if r.is_finite() && r >= 0.0 => Ok(Some(r)),
                _ => Err(format!("{key}: expected iterations per second (100, \"100/s\", \"600/m\"), got {v}")),
            },
        }
    };
    let Some(start_rate) = rate("arrival_rate")? else {
        for key in ["arrival_target", "max_users"] {
            if t.contains_key(key) {
                return Err(format!("{key}: only an arrival-rate phase (arrival_rate) has one"));
            }
        }
        return Ok(None);
    };
    let stages = rate("arrival_target")?.map(|target| vec![RateStage { duration, target }]).unwrap_or_default();
    let max_users = match t.get("max_users") {
        None => users,
        Some(Value::Integer(n)) if *n > 0 && *n <= 10_000_000 => *n as usize,
        Some(v) => return Err(format!("max_users: expected a whole number from 1 to 10000000, got {v}")),
    };
    let arrival = ArrivalRate { start_rate, stages, pre_allocated: users, max_users };
    arrival.check().map_err(|e| format!("users / max_users: {e}"))?;
    Ok(Some(arrival))
}

fn user_type(value: &Value) -> Result<(String, u32, Option<WaitSpec>), String> {
    let Value::Table(t) = value else { return Err(format!("expected a table, got {}", value.type_str())) };
    known_fields(t, TYPE_FIELDS)?;
    let name = match t.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v) => return Err(format!("name: expected a user class name, got {v}")),
        None => return Err("name: missing (a user class of the plan)".into()),
    };
    let at = |e: String| format!("{name}: {e}");
    let ratio = match t.get("ratio") {
        None => 1,
        Some(Value::Integer(n)) if (0..=1_000_000).contains(n) => *n as u32,
        Some(v) => return Err(at(format!("ratio: expected a whole number from 0 to 1000000, got {v}"))),
    };
    let ms = |key: &str| -> Result<Option<f64>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => match number(v) {
                Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                _ => Err(at(format!("{key}: expected milliseconds, 0 or more, got {v}"))),
            },
        }
    };
    let wait = match (ms("min_wait_ms")?, ms("max_wait_ms")?, t.get("wait_time")) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(at("give min_wait_ms and max_wait_ms, or wait_time, not both".into()));
        }
        (Some(min), Some(max), None) if min > max => {
            return Err(at(format!("min_wait_ms ({min}) is more than max_wait_ms ({max})")));
        }
        (Some(min), Some(max), None) => Some(WaitSpec::Between(min / 1000.0, max / 1000.0)),
        (Some(_), None, None) | (None, Some(_), None) => {
            return Err(at("min_wait_ms and max_wait_ms go together".into()));
        }
        (None, None, Some(Value::String(text))) => {
            Some(WaitSpec::parse(text).map_err(|e| at(format!("wait_time: {e}")))?)
        }
        (None, None, Some(v)) => {
            return Err(at(format!("wait_time: expected a string like \"between(1, 2)\", got {v}")));
        }
        (None, None, None) => None,
    };
    Ok((name, ratio, wait))
}

fn duration(value: &Value) -> Result<Duration, String> {
    let span = match value {
        Value::String(s) => parse_timespan(s).map_err(|e| e.to_string())?,
        v => match number(v) {
            Some(n) if n.is_finite() && n >= 0.0 => Duration::from_secs_f64(n),
            _ => return Err(format!("expected \"30s\", \"2m\" or seconds, more than 0; got {v}")),
        },
    };
    if span.is_zero() {
        return Err(format!("must be more than 0, got {value}"));
    }
    Ok(span)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn known_fields(t: &toml::Table, known: &[&str]) -> Result<(), String> {
    for key in t.keys() {
        if !known.contains(&key.as_str()) {
            let suggestion = known
                .iter()
                .map(|k| (strsim::jaro_winkler(k, key), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!(" (did you mean '{k}'?)"))
                .unwrap_or_default();
            return Err(format!("unknown field '{key}'{suggestion}; known: {}", known.join(", ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Phases, String> {
        parse(Path::new("load.toml"), text)
    }

    #[test]
    fn the_seeds_phases_read() {
        let phases = read_text(
            r#"
users = 3   # a config file's own option: not the phases reader's business
[[phases]]
name = "weekday"
duration = "20s"
users = 40
spawn_rate = 10
[[phases.user_types]]
name = "Weekday"
ratio = 3
min_wait_ms = 100
max_wait_ms = 200
[[phases.user_types]]
name = "Weekend"
ratio = 1
wait_time = "constant(0.5)"

[[phases]]
duration = 30
users = 60
"#,
        )
        .unwrap();
        assert_eq!(phases.name, "load.toml");
        let [first, second] = phases.phases.as_slice() else { panic!("{phases:?}") };
        assert_eq!(
            (first.name.as_str(), first.duration, first.users, first.spawn_rate),
            ("weekday", Duration::from_secs(20), 40, 10.0)
        );
        assert_eq!(first.ratios, BTreeMap::from([("Weekday".into(), 3), ("Weekend".into(), 1)]));
        assert_eq!(first.wait_times["Weekday"], WaitSpec::Between(0.1, 0.2));
        assert_eq!(first.wait_times["Weekend"], WaitSpec::Constant(0.5));
        assert_eq!(
            (second.name.as_str(), second.duration, second.spawn_rate),
            ("phase 2", Duration::from_secs(30), 1.0)
        );
        assert!(second.ratios.is_empty() && second.wait_times.is_empty());
    }

    /// The example the docs point at is the seed's scenario.
    #[test]
    fn the_examples_phases_are_the_seeds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lua/phases/phases.toml");
        let phases = read(&path).unwrap();
        let shown: Vec<(&str, Vec<u32>, Vec<WaitSpec>)> = phases
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.ratios.values().copied().collect(), p.wait_times.values().copied().collect()))
            .collect();
        assert_eq!(
            shown,
            [
                ("weekday", vec![3, 1], vec![WaitSpec::Between(0.1, 0.2); 2]),
                ("weekend", vec![1, 2], vec![WaitSpec::Between(1.0, 2.0); 2]),
            ]
        );
    }

    #[test]
    fn arrival_rate_phases_ramp_over_the_phase() {
        let phases = read_text(
            "[[phases]]\nname = \"warm\"\nduration = \"10s\"\nusers = 2\narrival_rate = 10\narrival_target = \"1200/m\"\nmax_users = 8\n\
             [[phases]]\nduration = 5\nusers = 3\n",
        )
        .unwrap();
        let warm = phases.phases[0].arrival.as_ref().unwrap();
        assert_eq!((warm.start_rate, warm.pre_allocated, warm.max_users), (10.0, 2, 8));
        assert_eq!(warm.stages, [RateStage { duration: Duration::from_secs(10), target: 20.0 }]);
        assert_eq!(phases.phases[1].arrival, None, "a closed phase after it");
    }

    #[test]
    fn errors_name_the_phase_and_the_field() {
        let cases = [
            ("[[phases]]\nduration = -5\nusers = 1\n", "load.toml: phase 1: duration: expected"),
            (
                "[[phases]]\nname = \"w\"\nduration = \"0s\"\nusers = 1\n",
                "load.toml: phase 1 (w): duration: must be more than 0",
            ),
            ("[[phases]]\nduration = \"1x\"\nusers = 1\n", "phase 1: duration:"),
            ("[[phases]]\nduration = 5\n", "phase 1: users: missing"),
            ("[[phases]]\nduration = 5\nusers = -1\n", "users: expected a whole number"),
            ("[[phases]]\nduration = 5\nusers = 1\nspawn_rate = 0\n", "spawn_rate: expected a number above 0"),
            (
                "[[phases]]\nduration = 5\nusers = 1\nspwan_rate = 2\n",
                "unknown field 'spwan_rate' (did you mean 'spawn_rate'?)",
            ),
            (
                "[[phases]]\nduration = 5\nusers = 1\n[[phases.user_types]]\nname = \"A\"\nmin_wait_ms = 5\n",
                "user_types[1]: A: min_wait_ms and max_wait_ms go together",
            ),
            (
                "[[phases]]\nduration = 5\nusers = 1\n[[phases.user_types]]\nname = \"A\"\nmin_wait_ms = 9\nmax_wait_ms = 5\n",
                "min_wait_ms (9) is more than max_wait_ms (5)",
            ),
            (
                "[[phases]]\nduration = 5\nusers = 1\n[[phases.user_types]]\nname = \"A\"\nwait_time = \"soon\"\n",
                "A: wait_time: \"soon\" is not a wait time",
            ),
            ("[[phases]]\nduration = 5\nusers = 1\n[[phases.user_types]]\nratio = 2\n", "user_types[1]: name: missing"),
            ("users = 2\n", "load.toml: no [[phases]] tables"),
            ("[[phases]]\nduration = 5\nusers = 1\nmax_users = 4\n", "max_users: only an arrival-rate phase"),
            ("[[phases]]\nduration = 5\nusers = 1\narrival_rate = \"fast\"\n", "arrival_rate: arrival rate 'fast'"),
            ("[[phases]]\nduration = 5\nusers = 0\narrival_rate = 5\n", "at least one user"),
            (
                "[[phases]]\nname = \"a\"\nduration = 5\nusers = 1\n[[phases]]\nname = \"a\"\nduration = 5\nusers = 1\n",
                "two phases are named \"a\"",
            ),
            ("[[phases]\n", "load.toml:"),
        ];
        for (text, expected) in cases {
            let err = read_text(text).unwrap_err();
            assert!(err.contains(expected), "{text}\n→ {err}\n(expected {expected:?})");
        }
    }
}
