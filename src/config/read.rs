//! Reading variables through a lookup closure, collecting every problem.

use super::error::Problem;
use std::time::Duration;

/// Reads variables with `get` and remembers each one that fails, so the
/// caller can report them all together.
pub(super) struct Reader<F> {
    get: F,
    pub(super) problems: Vec<Problem>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn new(get: F) -> Self {
        Self { get, problems: Vec::new() }
    }

    /// The trimmed value, or `None` when unset. An empty value counts as
    /// unset: templates (CloudFormation, SAM) pass `""` for an optional
    /// parameter left blank.
    pub(super) fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    pub(super) fn problem(&mut self, variable: &'static str, value: Option<&str>, expected: &str) {
        self.problems.push(Problem {
            variable,
            value: value.map(redact),
            expected: expected.to_string(),
        });
    }

    /// A required variable parsed with `parse`; `parse` errors are the
    /// "expected ..." text.
    pub(super) fn required<T>(
        &mut self,
        var: &'static str,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.raw(var) {
            None => {
                self.problem(var, None, &format!("{expected} (required)"));
                None
            }
            Some(v) => self.parse(var, &v, parse),
        }
    }

    /// An optional variable: `Ok(None)`-like `Some(None)` when unset,
    /// `None` when set but invalid (the problem is recorded).
    pub(super) fn optional<T>(
        &mut self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.raw(var) {
            None => Some(None),
            Some(v) => self.parse(var, &v, parse).map(Some),
        }
    }

    /// A variable with a default, parsed with `FromStr`-like `parse`.
    pub(super) fn or_default<T>(
        &mut self,
        var: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.optional(var, parse).map(|v| v.unwrap_or(default))
    }

    /// An integer in `min..=max`, with a default. `_` separators are allowed
    /// (`10_485_760`), as in Rust literals.
    pub(super) fn integer(
        &mut self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        self.or_default(var, default, |s| match s.replace('_', "").parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("an integer from {min} to {max}")),
        })
    }

    /// Milliseconds in `min..=max`, with a default.
    pub(super) fn millis(
        &mut self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Option<Duration> {
        self.integer(var, default, min, max).map(Duration::from_millis)
    }

    fn parse<T>(
        &mut self,
        var: &'static str,
        value: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value) {
            Ok(t) => Some(t),
            Err(expected) => {
                self.problem(var, Some(value), &expected);
                None
            }
        }
    }
}

/// Hides user info (`user:password@`) in anything URL-shaped before it is
/// echoed in an error: a config error must never carry a credential.
fn redact(value: &str) -> String {
    match (value.find("://"), value.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &value[..scheme_end], &value[at + 1..])
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info() {
        assert_eq!(redact("https://u:secret@host/q"), "https://***@host/q");
        assert_eq!(redact("s3://bucket/a@b"), "s3://***@b");
        assert_eq!(redact("file:///tmp/x"), "file:///tmp/x");
        assert_eq!(redact("12"), "12");
    }
}
