//! What is wrong with the environment, all of it at once.
//!
//! A deploy with three bad variables should take one round trip to fix, not
//! three, so parsing collects every [`Problem`] before failing.

use std::fmt;

/// One variable whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable, e.g. `BATCH_MAX_ROWS`.
    pub variable: &'static str,
    /// The value as given; `None` when the variable is unset (required) or
    /// when showing it could leak something (URLs with user info).
    pub value: Option<String>,
    /// What would be accepted, in words a deployer can act on.
    pub expected: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v:?}: expected {}", self.variable, self.expected),
            None => write!(f, "{}: expected {}", self.variable, self.expected),
        }
    }
}

/// Every problem found in the environment; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({} problem(s)): {}", .problems.len(), Joined(.problems))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// The variables at fault, in the order they were read.
    pub fn variables(&self) -> Vec<&'static str> {
        self.problems.iter().map(|p| p.variable).collect()
    }
}

struct Joined<'a>(&'a [Problem]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
