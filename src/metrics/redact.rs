//! The last line of defence for "no credential in any log line": every
//! line the subscriber writes passes through [`Redactor::scrub`].
//!
//! Our own code never logs configuration values or the environment, and
//! `LOG_LEVEL` keeps libraries at `warn`. But `RUST_LOG=trace` is the
//! operator's explicit choice, and at TRACE the AWS SDK prints the resolved
//! identity (access key id) and HTTP/2 libraries may print request headers
//! (`authorization: Bearer …`). So lines are scrubbed of (a) the exact values
//! of credential-looking environment variables, and (b) credential shapes:
//! AWS access key ids, bearer tokens, PEM private keys.

use std::io::{self, Write};

const MASK: &str = "***";

/// Masks known secret values and credential shapes in log lines.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// `secrets`: exact values to mask (values shorter than 8 characters are
    /// ignored: masking every "true" or "1" would garble logs and protect
    /// nothing).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 8).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// The line with every secret value and credential shape masked.
    pub fn scrub(&self, line: &str) -> String {
        let mut out = line.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        let out = mask_access_key_ids(&out);
        let out = mask_after(&out, "Bearer ", is_token_char);
        let out = mask_after(&out, "bearer ", is_token_char);
        mask_pem(&out)
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

/// AWS access key ids: `AKIA`/`ASIA` + 16 upper-case letters or digits
/// (IAM "Unique identifiers").
fn mask_access_key_ids(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let is_key = (rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"))
            && rest.len() >= 20
            && rest[4..20].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if is_key {
            out.push_str(MASK);
            i += 20;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}

/// Masks the run of `keep`-characters following each `marker`.
fn mask_after(s: &str, marker: &str, keep: fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(marker) {
        let (head, tail) = rest.split_at(at + marker.len());
        out.push_str(head);
        let token_len: usize = tail.chars().take_while(|c| keep(*c)).map(char::len_utf8).sum();
        if token_len > 0 {
            out.push_str(MASK);
        }
        rest = &tail[token_len..];
    }
    out.push_str(rest);
    out
}

/// Masks PEM private key bodies (`-----BEGIN ... PRIVATE KEY-----` to the
/// end marker, or to the end of the line).
fn mask_pem(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("-----BEGIN") {
        let header_end = rest[at..].find("PRIVATE KEY-----").map(|e| at + e + 16);
        match header_end {
            Some(body) => {
                out.push_str(&rest[..body]);
                out.push_str(MASK);
                let end = rest[body..].find("-----END").map_or(rest.len(), |e| body + e);
                rest = &rest[end..];
                if !rest.starts_with("-----END") {
                    break;
                }
                // Step past the end marker's dashes so the loop moves on.
                out.push_str("-----END");
                rest = &rest["-----END".len()..];
            }
            None => {
                out.push_str(&rest[..at + 10]);
                rest = &rest[at + 10..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A writer that scrubs each write (the JSON formatter writes one whole
/// event per call) before passing it on.
pub struct RedactingWriter<W> {
    inner: W,
    redactor: std::sync::Arc<Redactor>,
}

impl<W> RedactingWriter<W> {
    pub fn new(inner: W, redactor: std::sync::Arc<Redactor>) -> Self {
        Self { inner, redactor }
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(self.redactor.scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_values_and_shapes() {
        let r = Redactor::new(["s3cr3t-value-123".to_string(), "short".into()]);
        let line = r#"{"a":"s3cr3t-value-123","id":"AKIAABCDEFGHIJKLMNOP","h":"authorization: Bearer ya29.a0-b_c","k":"-----BEGIN PRIVATE KEY-----MIIEv\nQ==-----END PRIVATE KEY-----","ok":"short AKIA12"}"#;
        let out = r.scrub(line);
        for secret in ["s3cr3t", "ABCDEFGHIJKLMNOP", "ya29", "MIIEv"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("short AKIA12"), "{out}");
        assert!(out.contains("Bearer ***"), "{out}");
        assert!(out.contains("-----END PRIVATE KEY-----"), "{out}");
    }

    #[test]
    fn leaves_ordinary_lines_alone() {
        let r = Redactor::new(Vec::new());
        let line = r#"{"message":"invocation summary","rows":8,"shard":"shardId-000000000006"}"#;
        assert_eq!(r.scrub(line), line);
        assert_eq!(r.scrub("-----BEGIN CERTIFICATE-----x"), "-----BEGIN CERTIFICATE-----x");
        assert_eq!(r.scrub("héllo Bearer"), "héllo Bearer");
    }

    #[test]
    fn writer_scrubs_each_write() {
        let r = std::sync::Arc::new(Redactor::new(["topsecretvalue".to_string()]));
        let mut w = RedactingWriter::new(Vec::new(), r);
        w.write_all(b"x topsecretvalue y\n").unwrap();
        assert_eq!(String::from_utf8(w.inner).unwrap(), "x *** y\n");
    }
}
