//! Options a plan declares for itself (Locust's `init_command_line_parser`
//! arguments): their specification, and the values in force.
//!
//! The values live behind one shared lock because more than one surface
//! sets them: the command line before the run, and the web UI's start form
//! before each test. Plans read them when they need them (not once at load),
//! so a value changed in the form reaches the users of the next test.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::OptionValueError;

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// Any text.
    String,
    /// A number; checked to parse as one.
    Number,
    /// `true` or `false`; a flag on the command line.
    Boolean,
}

impl OptionKind {
    /// The kind's name in the web UI's JSON: `string`, `number` or `boolean`.
    pub fn as_str(self) -> &'static str {
        match self {
            OptionKind::String => "string",
            OptionKind::Number => "number",
            OptionKind::Boolean => "boolean",
        }
    }
}

/// One option a plan declares: `--name` on the command line, a field of the
/// same name in the web UI's start form.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanOption {
    /// Long name without dashes (`my-option` for `--my-option`).
    pub name: String,
    /// One-line description, shown in `--help` and the web UI's form.
    pub help: String,
    /// The default as text, shown in `--help` and filled into the form; `None` if there is none.
    pub default: Option<String>,
    /// The type of the option's value.
    pub kind: OptionKind,
    /// The only values allowed (Locust's `choices=`), in order; empty when
    /// any value of the kind is. The web UI's form offers them in a list.
    pub choices: Vec<String>,
}

impl PlanOption {
    /// Check a value given for this option; the error names the option.
    pub fn check(&self, value: &str) -> Result<(), OptionValueError> {
        match self.kind {
            OptionKind::Number if value.trim().parse::<f64>().is_err() => {
                Err(OptionValueError::NotANumber { option: self.name.clone(), value: value.to_owned() })
            }
            OptionKind::Boolean if !matches!(value, "true" | "false") => {
                Err(OptionValueError::NotABoolean { option: self.name.clone(), value: value.to_owned() })
            }
            // An empty value means "the default", as when none is given.
            _ if !value.is_empty() && !self.choices.is_empty() && !self.choices.iter().any(|c| c == value) => {
                Err(OptionValueError::NotAChoice {
                    option: self.name.clone(),
                    value: value.to_owned(),
                    choices: self.choices.join(", "),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The values given for a plan's options, shared by every shard and surface.
/// Each access is one map operation, so a lock poisoned by a panic
/// elsewhere still holds whole values and is taken anyway.
#[derive(Clone, Default, Debug)]
pub struct OptionValues(Arc<RwLock<HashMap<String, String>>>);

impl OptionValues {
    /// A store holding `values`, keyed by option name (without dashes).
    pub fn new(values: HashMap<String, String>) -> Self {
        Self(Arc::new(RwLock::new(values)))
    }

    /// The value given for `name`, if any (the plan applies its default).
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Set the value of option `name`; every clone sees it.
    pub fn set(&self, name: &str, value: String) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), value);
    }

    /// Every value given, for display.
    pub fn snapshot(&self) -> HashMap<String, String> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_booleans_are_checked_by_kind() {
        let number = PlanOption {
            name: "n".into(),
            help: String::new(),
            default: None,
            kind: OptionKind::Number,
            choices: Vec::new(),
        };
        assert!(number.check("2.5").is_ok());
        assert!(number.check("two").unwrap_err().to_string().contains("n: expected a number"));
        let flag = PlanOption { kind: OptionKind::Boolean, ..number };
        assert!(flag.check("true").is_ok());
        assert!(flag.check("yes").is_err());
    }

    #[test]
    fn a_value_outside_the_choices_is_refused_naming_them() {
        let shape = PlanOption {
            name: "shape".into(),
            help: String::new(),
            default: None,
            kind: OptionKind::String,
            choices: vec!["ramp".into(), "spike".into()],
        };
        assert!(shape.check("spike").is_ok());
        assert!(shape.check("").is_ok(), "empty is the default");
        let err = shape.check("spik").unwrap_err().to_string();
        assert_eq!(err, "shape: expected one of ramp, spike, got \"spik\"");
    }

    #[test]
    fn values_set_through_one_handle_are_seen_through_its_clones() {
        let values = OptionValues::default();
        let other = values.clone();
        values.set("env", "staging".into());
        assert_eq!(other.get("env").as_deref(), Some("staging"));
    }
}
