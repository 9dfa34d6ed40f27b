//! Test data for plans: CSV datasets loaded once per process and shared by
//! every shard (cycling or unique rows), JSON files, and random helpers.
//!
//! `swarmer.csv("users.csv")` reads the file next to the plan the first time
//! any VM of the plan asks and keeps it in the plan's shared store, so 5,000 users
//! on 8 shards share one copy, and `:take()` hands each row out once across
//! the whole process (Locust's "unique test data per user").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};
use rand::Rng;
use swarmer_engine::LockExt;

use crate::module::caller_location;

/// The folder of the plan, for resolving data file names.
#[derive(Clone)]
pub struct PlanDir(pub PathBuf);

/// A CSV file: header and rows, with a cycling cursor and a take cursor.
pub struct Dataset {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    next: AtomicUsize,
    taken: AtomicUsize,
}

impl Dataset {
    fn load(path: &Path) -> Result<Self, String> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header: Vec<String> =
            reader.headers().map_err(|e| format!("{}: {e}", path.display()))?.iter().map(str::to_owned).collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
            rows.push(record.iter().map(str::to_owned).collect());
        }
        Ok(Self { header, rows, next: AtomicUsize::new(0), taken: AtomicUsize::new(0) })
    }

    fn row(&self, lua: &Lua, index: usize) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        for (key, value) in self.header.iter().zip(&self.rows[index]) {
            t.set(key.as_str(), value.as_str())?;
        }
        Ok(t)
    }
}

/// The Lua handle of a shared dataset.
struct LuaDataset(Arc<Dataset>);

impl UserData for LuaDataset {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // The next row, cycling back to the first after the last.
        methods.add_method("next", |lua, this, ()| {
            let d = &this.0;
            if d.rows.is_empty() {
                return Ok(Value::Nil);
            }
            let i = d.next.fetch_add(1, Ordering::Relaxed) % d.rows.len();
            d.row(lua, i).map(Value::Table)
        });
        // A row no other caller in this process gets; nil once all are taken.
        methods.add_method("take", |lua, this, ()| {
            let i = this.0.taken.fetch_add(1, Ordering::Relaxed);
            if i < this.0.rows.len() { this.0.row(lua, i).map(Value::Table) } else { Ok(Value::Nil) }
        });
        methods.add_method("len", |_, this, ()| Ok(this.0.rows.len()));
        methods.add_method("rows", |lua, this, ()| {
            let t = lua.create_table()?;
            for i in 0..this.0.rows.len() {
                t.push(this.0.row(lua, i)?)?;
            }
            Ok(t)
        });
    }
}

/// The data files a plan opened while it was described (kept only then).
#[derive(Default)]
pub struct UsedFiles(pub std::cell::RefCell<Vec<PathBuf>>);

fn resolve(lua: &Lua, name: &str) -> PathBuf {
    let path = match crate::vm::app_data::<PlanDir>(lua) {
        Some(dir) if Path::new(name).is_relative() => dir.0.join(name),
        _ => PathBuf::from(name),
    };
    if let Some(used) = crate::vm::app_data::<UsedFiles>(lua) {
        used.0.borrow_mut().push(path.clone());
    }
    path
}

/// Install `swarmer.csv`, `swarmer.json`, `swarmer.json_decode`,
/// `swarmer.json_encode` and `swarmer.random`.
pub fn install(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set(
        "csv",
        lua.create_function(|lua, name: String| {
            let path = resolve(lua, &name);
            let shared = crate::vm::app_data::<crate::vm::PlanData>(lua).map(|s| s.0.clone());
            let key = format!("csv:{}", path.canonicalize().unwrap_or_else(|_| path.clone()).display());
            let fail = |e: String| mlua::Error::runtime(format!("{}swarmer.csv: {e}", caller_location(lua)));
            let dataset = match shared {
                Some(shared) => {
                    let mut store = shared.lock_or_recover();
                    match store.get(&key).cloned().and_then(|d| d.downcast::<Dataset>().ok()) {
                        Some(d) => d,
                        None => {
                            let d = Arc::new(Dataset::load(&path).map_err(fail)?);
                            store.insert(key, d.clone());
                            d
                        }
                    }
                }
                None => Arc::new(Dataset::load(&path).map_err(fail)?),
            };
            Ok(LuaDataset(dataset))
        })?,
    )?;
    module.set(
        "json",
        lua.create_function(|lua, name: String| {
            let path = resolve(lua, &name);
            let fail = |e: String| {
                mlua::Error::runtime(format!("{}swarmer.json: {}: {e}", caller_location(lua), path.display()))
            };
            let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
            lua.to_value(&value)
        })?,
    )?;
    module.set(
        "json_decode",
        lua.create_function(|lua, text: String| {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| mlua::Error::runtime(format!("json_decode: {e}")))?;
            lua.to_value(&value)
        })?,
    )?;
    module.set(
        "json_encode",
        lua.create_function(|lua, value: Value| {
            let value: serde_json::Value = lua.from_value(value)?;
            Ok(value.to_string())
        })?,
    )?;
    let random = lua.create_table()?;
    random.set(
        "int",
        lua.create_function(|_, (a, b): (i64, i64)| {
            if a > b {
                return Err(mlua::Error::runtime(format!("random.int({a}, {b}): expected a <= b")));
            }
            Ok(rand::thread_rng().gen_range(a..=b))
        })?,
    )?;
    random.set(
        "choice",
        lua.create_function(|_, list: Table| {
            let n = list.raw_len();
            if n == 0 {
                return Err(mlua::Error::runtime("random.choice: the list is empty"));
            }
            list.get::<Value>(rand::thread_rng().gen_range(1..=n))
        })?,
    )?;
    random.set(
        "string",
        lua.create_function(|_, n: usize| {
            Ok(rand::thread_rng()
                .sample_iter(rand::distributions::Alphanumeric)
                .take(n)
                .map(char::from)
                .collect::<String>())
        })?,
    )?;
    random.set(
        "uuid",
        lua.create_function(|_, ()| {
            let b: [u8; 16] = rand::thread_rng().r#gen();
            let v = u128::from_be_bytes(b) & !(0xf000u128 << 64) | (0x4000u128 << 64);
            let v = v & !(0xc000u128 << 48) | (0x8000u128 << 48);
            let h = format!("{v:032x}");
            Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
        })?,
    )?;
    module.set("random", random)?;
    Ok(())
}
