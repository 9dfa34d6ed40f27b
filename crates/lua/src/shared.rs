//! Data every VM of a plan shares: `swarmer.shared` (named values) and
//! `swarmer.queue(name)` (named lists consumed across shards).
//!
//! Each shard has a VM of its own and the process VM runs the listeners,
//! so a Lua table filled in `test_start` is not the table the users see.
//! What a listener or message handler prepares for users goes here
//! instead: plain data (nil, booleans, numbers, strings and tables of
//! them), copied in and out, behind one lock per store. A queue hands each
//! value to exactly one caller, whatever shard it runs on (Locust's
//! `usernames.pop()`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use mlua::{Lua, MultiValue, Table, Value};
use swarmer_engine::LockExt;

/// Tables nested deeper than this are refused.
const MAX_DEPTH: usize = 32;
/// Values in one shared value at most (a table reached by many paths is
/// counted once per path).
const MAX_VALUES: usize = 1_000_000;

/// Where a conversion is: the tables on the path to it, and values so far.
#[derive(Default)]
struct Walk {
    path: Vec<*const std::ffi::c_void>,
    values: usize,
}

/// A value that can cross from one VM to another.
#[derive(Clone, Debug, PartialEq)]
enum SharedValue {
    Nil,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    String(Vec<u8>),
    Table(Vec<(SharedValue, SharedValue)>),
}

/// The named values and queues of one load of a plan.
#[derive(Default)]
pub struct SharedStore {
    values: Mutex<HashMap<String, SharedValue>>,
    queues: Mutex<HashMap<String, VecDeque<SharedValue>>>,
}

/// The key of the store in the plan's shared data.
const STORE_KEY: &str = "lua:shared";

/// The store of the plan `lua` runs.
fn store(lua: &Lua) -> mlua::Result<Arc<SharedStore>> {
    let data = crate::vm::app_data::<crate::vm::PlanData>(lua)
        .map(|d| d.0.clone())
        .ok_or_else(|| mlua::Error::runtime("internal: the VM has no plan data"))?;
    let mut data = data.lock_or_recover();
    let entry = data.entry(STORE_KEY.to_owned()).or_insert_with(|| Arc::new(SharedStore::default()));
    entry.clone().downcast::<SharedStore>().map_err(|_| mlua::Error::runtime("internal: the shared store"))
}

fn to_shared(value: &Value, walk: &mut Walk) -> Result<SharedValue, String> {
    walk.values += 1;
    if walk.values > MAX_VALUES {
        return Err(format!("more than {MAX_VALUES} values"));
    }
    Ok(match value {
        Value::Nil => SharedValue::Nil,
        Value::Boolean(b) => SharedValue::Boolean(*b),
        Value::Integer(n) => SharedValue::Integer(*n),
        Value::Number(x) => SharedValue::Number(*x),
        Value::String(s) => SharedValue::String(s.as_bytes().to_vec()),
        Value::Table(t) => {
            if walk.path.contains(&t.to_pointer()) {
                return Err("a table that contains itself cannot be shared".into());
            }
            if walk.path.len() >= MAX_DEPTH {
                return Err(format!("tables nested more than {MAX_DEPTH} deep"));
            }
            walk.path.push(t.to_pointer());
            let mut pairs = Vec::new();
            for pair in t.clone().pairs::<Value, Value>() {
                let (key, value) = pair.map_err(|e| crate::vm::clean(&e))?;
                pairs.push((to_shared(&key, walk)?, to_shared(&value, walk)?));
            }
            walk.path.pop();
            SharedValue::Table(pairs)
        }
        other => {
            return Err(format!(
                "a {} cannot be shared between VMs (share nil, booleans, numbers, strings and tables of them)",
                other.type_name()
            ));
        }
    })
}

fn to_lua(lua: &Lua, value: &SharedValue) -> mlua::Result<Value> {
    Ok(match value {
        SharedValue::Nil => Value::Nil,
        SharedValue::Boolean(b) => Value::Boolean(*b),
        SharedValue::Integer(n) => Value::Integer(*n),
        SharedValue::Number(x) => Value::Number(*x),
        SharedValue::String(bytes) => Value::String(lua.create_string(bytes)?),
        SharedValue::Table(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (key, value) in pairs {
                t.raw_set(to_lua(lua, key)?, to_lua(lua, value)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Install the functions behind `swarmer.shared` and `swarmer.queue` (the
/// prelude wraps them, so errors name the plan's line). Those that take a
/// value return `nil, message` when it cannot be shared.
pub fn install(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set(
        "_shared_get",
        lua.create_function(|lua, key: String| {
            let value = store(lua)?.values.lock_or_recover().get(&key).cloned();
            value.map_or(Ok(Value::Nil), |v| to_lua(lua, &v))
        })?,
    )?;
    module.set(
        "_shared_set",
        lua.create_function(|lua, (key, value): (String, Value)| {
            let value = match to_shared(&value, &mut Walk::default()) {
                Ok(value) => value,
                Err(message) => return Ok(Some(message)),
            };
            let store = store(lua)?;
            let mut values = store.values.lock_or_recover();
            if value == SharedValue::Nil {
                values.remove(&key);
            } else {
                values.insert(key, value);
            }
            Ok(None)
        })?,
    )?;
    module.set(
        "_queue_push",
        lua.create_function(|lua, (name, values): (String, MultiValue)| {
            let mut converted = Vec::with_capacity(values.len());
            for value in &values {
                match to_shared(value, &mut Walk::default()) {
                    Ok(SharedValue::Nil) => return Ok((None, Some("nil cannot be pushed".to_owned()))),
                    Ok(value) => converted.push(value),
                    Err(message) => return Ok((None, Some(message))),
                }
            }
            let store = store(lua)?;
            let mut queues = store.queues.lock_or_recover();
            let queue = queues.entry(name).or_default();
            queue.extend(converted);
            Ok((Some(queue.len()), None))
        })?,
    )?;
    module.set(
        "_queue_take",
        lua.create_function(|lua, (name, first): (String, bool)| {
            let taken = {
                let store = store(lua)?;
                let mut queues = store.queues.lock_or_recover();
                queues.get_mut(&name).and_then(|q| if first { q.pop_front() } else { q.pop_back() })
            };
            taken.map_or(Ok(Value::Nil), |v| to_lua(lua, &v))
        })?,
    )?;
    module.set(
        "_queue_len",
        lua.create_function(|lua, name: String| {
            Ok(store(lua)?.queues.lock_or_recover().get(&name).map_or(0, VecDeque::len))
        })?,
    )?;
    module.set(
        "_queue_clear",
        lua.create_function(|lua, name: String| {
            store(lua)?.queues.lock_or_recover().remove(&name);
            Ok(())
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Function;

    #[test]
    fn plain_data_round_trips_and_the_rest_is_refused_with_its_type() {
        let lua = Lua::new();
        let value: Value = lua.load("return { 'a', 2, 3.5, true, nested = { x = 'y' } }").eval().unwrap();
        let shared = to_shared(&value, &mut Walk::default()).unwrap();
        let back = to_lua(&lua, &shared).unwrap();
        let check: Function = lua
            .load(
                "return function(t) return t[1] == 'a' and math.type(t[2]) == 'integer' and t[3] == 3.5 and t[4] \
                 and t.nested.x == 'y' end",
            )
            .eval()
            .unwrap();
        assert!(check.call::<bool>(back).unwrap());
        let function: Value = lua.load("return { f = print }").eval().unwrap();
        assert!(to_shared(&function, &mut Walk::default()).unwrap_err().contains("a function cannot be shared"));
        let cycle: Value = lua.load("local t = {} t.t = t return t").eval().unwrap();
        assert!(to_shared(&cycle, &mut Walk::default()).unwrap_err().contains("contains itself"));
        // Reached by many paths, not a cycle: refused quickly, not walked 2^32 times.
        let wide: Value = lua.load("local t = {} for i = 1, 25 do t = { a = t, b = t } end return t").eval().unwrap();
        assert!(to_shared(&wide, &mut Walk::default()).unwrap_err().contains("values"));
        let shared_twice: Value = lua.load("local leaf = { 1 } return { leaf, leaf }").eval().unwrap();
        assert!(to_shared(&shared_twice, &mut Walk::default()).is_ok(), "the same table twice is no cycle");
    }
}
