//! The `tracing` subscriber: JSON lines, one object per event, with the
//! fields of the enclosing spans (`request_id`, `shard_id`, ...), every line
//! scrubbed of credentials on its way out.

use super::redact::{RedactingWriter, Redactor};
use crate::config::LogFilter;
use std::io::Write;
use std::sync::Arc;

/// Where log lines and EMF lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOutput {
    /// Lambda: stdout is the function's log stream, where CloudWatch reads EMF.
    Stdout,
    /// CLI commands: stdout carries the command's own output (`invoke`
    /// prints the response JSON), so logs go to stderr.
    Stderr,
    /// Nothing: the demo runs hundreds of invocations in-process and prints
    /// its own summary instead.
    Discard,
}

impl LogOutput {
    /// Writes one whole line (EMF must not be interleaved with other output).
    pub fn write_line(self, line: &str) {
        // A log line that cannot be written (closed pipe) is not worth failing
        // an invocation over.
        let _ = match self {
            Self::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
            Self::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
            Self::Discard => Ok(()),
        };
    }
}

/// Installs the global JSON subscriber; `redactor` masks credentials in
/// every line. Returns `false` when one was already installed (tests, or a
/// second call): the first one stays.
pub fn init_logging(filter: &LogFilter, output: LogOutput, redactor: Redactor) -> bool {
    let redactor = Arc::new(redactor);
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_target(true)
        .with_env_filter(filter.env_filter());
    match output {
        LogOutput::Stdout => builder
            .with_writer(move || RedactingWriter::new(std::io::stdout(), Arc::clone(&redactor)))
            .try_init()
            .is_ok(),
        LogOutput::Stderr => builder
            .with_writer(move || RedactingWriter::new(std::io::stderr(), Arc::clone(&redactor)))
            .try_init()
            .is_ok(),
        LogOutput::Discard => builder.with_writer(std::io::sink).try_init().is_ok(),
    }
}
