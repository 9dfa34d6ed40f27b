//! What each long option takes (a switch, an integer in a range, a number,
//! a time span, text), read from clap's `Command` rather than kept by hand,
//! and how a config file's TOML value becomes that option's arguments.
//!
//! The config file reaches clap as command-line arguments. Without a check
//! of the TOML type first, a wrong type came out as a puzzling clap error:
//! `headless = "yes"` put `yes` on the command line as a user class, and a
//! value starting with `-` was read as a flag. Here every value is checked
//! against its option's kind, errors name the expected type and what was
//! found, and a value is always passed as `--name=value` so that clap can
//! only read it as that option's value.

use std::any::TypeId;
use std::ffi::OsString;
use std::time::Duration;

use clap::{Arg, ArgAction};

/// The kind of value an option takes, from its action and value parser.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// Present or absent (`--headless`): a TOML boolean.
    Switch,
    /// An integer the option's Rust type can hold (`--users`, `--web-port`).
    Integer { min: i128, max: i128 },
    /// Any number, integer or not (`--spawn-rate`).
    Number,
    /// A number, or text with a unit (`--arrival-rate`: 100 or "600/m").
    Rate,
    /// A time span (`--run-time`, `--stop-timeout`): seconds as a number,
    /// or text the option's parser reads, like "1h30m".
    Span,
    /// Text; when the option has a fixed set of values, one of `choices`
    /// (an integer is accepted when it is one of them: `http-version = 2`).
    Text { choices: Vec<String>, ignore_case: bool },
    /// Not an option a file can set (`--help`, `--version`).
    NotSettable,
}

/// One long option: its name, environment variable, kind of value, and
/// whether it can be given more than once to collect a list (`--tags`).
#[derive(Debug, Clone)]
pub struct OptionShape {
    pub long: String,
    pub env: Option<String>,
    pub kind: ValueKind,
    pub list: bool,
}

impl OptionShape {
    /// The shape of `arg`, or `None` when it has no long name. `arg` must
    /// come from a built `Command` (`Command::build`), which settles every
    /// argument's action.
    pub fn of(arg: &Arg) -> Option<Self> {
        let long = arg.get_long()?.to_owned();
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let action = arg.get_action();
        let kind = match action {
            ArgAction::SetTrue => ValueKind::Switch,
            ArgAction::Set | ArgAction::Append => value_kind(arg),
            _ => ValueKind::NotSettable,
        };
        Some(Self { long, env, kind, list: matches!(action, ArgAction::Append) })
    }

    /// The arguments that give this option `value`. An error says what was
    /// expected and what was found; the caller adds the file and the key.
    pub fn args_for(&self, value: &toml::Value) -> Result<Vec<OsString>, String> {
        match (&self.kind, value) {
            (ValueKind::NotSettable, _) => Err("cannot be set in a config file".to_owned()),
            (ValueKind::Switch, toml::Value::Boolean(true)) => Ok(vec![format!("--{}", self.long).into()]),
            (ValueKind::Switch, toml::Value::Boolean(false)) => Ok(Vec::new()),
            (ValueKind::Switch, other) => Err(mismatch(&self.kind, other)),
            (_, toml::Value::Array(items)) if self.list => {
                items.iter().map(|item| self.one_value(item).map_err(|e| format!("{e} in the list"))).collect()
            }
            (_, other) => Ok(vec![self.one_value(other)?]),
        }
    }

    /// `--name=value`: the `=` keeps a value like `-5` or `-x` from being
    /// read as a flag.
    fn one_value(&self, value: &toml::Value) -> Result<OsString, String> {
        let text = value_text(&self.kind, value)?;
        Ok(format!("--{}={text}", self.long).into())
    }
}

/// The kind of a value-taking option, from the Rust type its parser returns.
fn value_kind(arg: &Arg) -> ValueKind {
    let parser = arg.get_value_parser();
    let type_id = parser.type_id();
    let integer = |min: i128, max: i128| ValueKind::Integer { min, max };
    let integers: [(TypeId, ValueKind); 10] = [
        (TypeId::of::<u8>(), integer(0, u8::MAX.into())),
        (TypeId::of::<u16>(), integer(0, u16::MAX.into())),
        (TypeId::of::<u32>(), integer(0, u32::MAX.into())),
        (TypeId::of::<u64>(), integer(0, u64::MAX.into())),
        (TypeId::of::<usize>(), integer(0, usize::MAX as i128)),
        (TypeId::of::<i8>(), integer(i8::MIN.into(), i8::MAX.into())),
        (TypeId::of::<i16>(), integer(i16::MIN.into(), i16::MAX.into())),
        (TypeId::of::<i32>(), integer(i32::MIN.into(), i32::MAX.into())),
        (TypeId::of::<i64>(), integer(i64::MIN.into(), i64::MAX.into())),
        (TypeId::of::<isize>(), integer(isize::MIN as i128, isize::MAX as i128)),
    ];
    if let Some((_, kind)) = integers.into_iter().find(|(id, _)| type_id == *id) {
        return kind;
    }
    if type_id == TypeId::of::<f64>() || type_id == TypeId::of::<f32>() {
        return ValueKind::Number;
    }
    if type_id == TypeId::of::<Duration>() {
        return ValueKind::Span;
    }
    if type_id == TypeId::of::<crate::args::Rate>() {
        return ValueKind::Rate;
    }
    let choices = arg.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect();
    ValueKind::Text { choices, ignore_case: arg.is_ignore_case_set() }
}

/// The text clap gets for one value of an option of `kind`.
fn value_text(kind: &ValueKind, value: &toml::Value) -> Result<String, String> {
    match (kind, value) {
        (ValueKind::Integer { min, max }, toml::Value::Integer(i)) => {
            if (*min..=*max).contains(&i128::from(*i)) {
                Ok(i.to_string())
            } else {
                Err(mismatch(kind, value))
            }
        }
        (ValueKind::Number, toml::Value::Integer(i)) => Ok(i.to_string()),
        (ValueKind::Number | ValueKind::Rate, toml::Value::Float(f)) => Ok(f.to_string()),
        (ValueKind::Rate, toml::Value::Integer(i)) if *i >= 0 => Ok(i.to_string()),
        (ValueKind::Rate, toml::Value::String(s)) => Ok(s.clone()),
        (ValueKind::Span, toml::Value::Integer(i)) if *i >= 0 => Ok(i.to_string()),
        (ValueKind::Span, toml::Value::Float(f)) if *f >= 0.0 => Ok(f.to_string()),
        (ValueKind::Span, toml::Value::String(s)) => Ok(s.clone()),
        (ValueKind::Text { choices, .. }, toml::Value::String(s)) if choices.is_empty() => Ok(s.clone()),
        (ValueKind::Text { choices, ignore_case }, toml::Value::String(s)) => choices
            .iter()
            .any(|c| if *ignore_case { c.eq_ignore_ascii_case(s) } else { c == s })
            .then(|| s.clone())
            .ok_or_else(|| mismatch(kind, value)),
        (ValueKind::Text { choices, .. }, toml::Value::Integer(i)) => {
            let text = i.to_string();
            choices.contains(&text).then_some(text).ok_or_else(|| mismatch(kind, value))
        }
        _ => Err(mismatch(kind, value)),
    }
}

/// "expected …, got …".
fn mismatch(kind: &ValueKind, value: &toml::Value) -> String {
    format!("expected {}, got {}", expected(kind), found(value))
}

fn expected(kind: &ValueKind) -> String {
    match kind {
        ValueKind::Switch => "a boolean (true or false)".to_owned(),
        ValueKind::Integer { min: 0, max } if *max >= i128::from(u32::MAX) => "a non-negative integer".to_owned(),
        ValueKind::Integer { min, max } if *min == i128::from(i64::MIN) && *max == i128::from(i64::MAX) => {
            "an integer".to_owned()
        }
        ValueKind::Integer { min, max } => format!("an integer from {min} to {max}"),
        ValueKind::Number => "a number".to_owned(),
        ValueKind::Rate => "a number of iterations per second, or a string like \"600/m\"".to_owned(),
        ValueKind::Span => "a non-negative number of seconds or a time span string like \"1h30m\"".to_owned(),
        ValueKind::Text { choices, .. } if choices.is_empty() => "a string".to_owned(),
        ValueKind::Text { choices, .. } => {
            let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
            format!("one of {}", quoted.join(", "))
        }
        ValueKind::NotSettable => "nothing".to_owned(),
    }
}

fn found(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date-time {d}"),
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::args::Cli;

    fn shape(long: &str) -> OptionShape {
        let mut command = Cli::command();
        command.build();
        command.get_arguments().filter_map(OptionShape::of).find(|s| s.long == long).unwrap()
    }

    #[test]
    fn kinds_come_from_the_command_line_definition() {
        assert_eq!(shape("headless").kind, ValueKind::Switch);
        assert_eq!(shape("users").kind, ValueKind::Integer { min: 0, max: usize::MAX as i128 });
        assert_eq!(shape("web-port").kind, ValueKind::Integer { min: 0, max: 65535 });
        assert_eq!(shape("autoquit").kind, ValueKind::Integer { min: i64::MIN.into(), max: i64::MAX.into() });
        assert_eq!(shape("spawn-rate").kind, ValueKind::Number);
        assert_eq!(shape("arrival-rate").kind, ValueKind::Rate);
        assert_eq!(shape("run-time").kind, ValueKind::Span);
        assert_eq!(shape("stop-timeout").kind, ValueKind::Span);
        assert_eq!(shape("host").kind, ValueKind::Text { choices: vec![], ignore_case: false });
        assert_eq!(shape("logfile").kind, ValueKind::Text { choices: vec![], ignore_case: false });
        let choices = ["auto", "1", "2"].map(String::from).to_vec();
        assert_eq!(shape("http-version").kind, ValueKind::Text { choices, ignore_case: false });
        assert_eq!(shape("help").kind, ValueKind::NotSettable);
        assert!(shape("tags").list && shape("ca-cert").list && !shape("host").list);
        assert_eq!(shape("users").env.as_deref(), Some("SWARMER_USERS"));
    }

    #[test]
    fn kinds_describe_what_they_expect() {
        assert_eq!(expected(&shape("users").kind), "a non-negative integer");
        assert_eq!(expected(&shape("web-port").kind), "an integer from 0 to 65535");
        assert_eq!(expected(&shape("exit-code-on-error").kind), "an integer from -2147483648 to 2147483647");
        assert_eq!(expected(&shape("autoquit").kind), "an integer");
        assert_eq!(expected(&shape("http-version").kind), "one of \"auto\", \"1\", \"2\"");
    }
}
