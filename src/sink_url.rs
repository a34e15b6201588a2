//! Where the sinks live: `STATE_URL`, `SPILL_URL` and `DLQ_URL` parsed once
//! into a [`SinkUrl`], and the AWS clients that reach them.
//!
//! Each seam (`StateStore`, `SpillSink`, `DeadLetterSink`) picks its
//! implementation from the variant in one place (its `open`), so a bad URL is
//! a configuration error at cold start, never a surprise mid-invocation.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A sink location, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SinkUrl {
    /// `s3://bucket/prefix`: objects go under `prefix/` (empty: bucket root).
    S3 { bucket: String, prefix: String },
    /// An SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE`), kept
    /// verbatim: SQS addresses a queue by its URL. Any `http(s)` URL with a path
    /// is accepted so tests and VPC endpoints can point elsewhere.
    Sqs { queue_url: String },
    /// `file:///abs/path` or `file://relative/path` (relative to the working
    /// directory): the local implementations, for the demo and tests.
    File { path: PathBuf },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid sink URL {input:?}: {why}; accepted forms: s3://BUCKET[/PREFIX], \
     https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE (any http(s) queue URL), \
     file:///ABSOLUTE/PATH or file://RELATIVE/PATH"
)]
pub struct SinkUrlError {
    pub input: String,
    pub why: &'static str,
}

impl FromStr for SinkUrl {
    type Err = SinkUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why| SinkUrlError { input: s.to_string(), why };
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !is_bucket_name(bucket) {
                return Err(fail(
                    "bucket names are 3-63 characters of a-z, 0-9, '.' and '-', \
                     starting and ending with a letter or digit",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|seg| seg == "." || seg == "..") || prefix.contains("//") {
                return Err(fail("the prefix must not contain empty, '.' or '..' segments"));
            }
            return Ok(Self::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            // `file:///abs` leaves "/abs"; `file://rel/x` leaves "rel/x".
            if rest.is_empty() || rest == "/" {
                return Err(fail("a file URL needs a path"));
            }
            return Ok(Self::File { path: PathBuf::from(rest) });
        }
        let after_scheme = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
        if let Some(rest) = after_scheme {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(fail("a queue URL needs a host"));
            }
            if path.trim_matches('/').is_empty() || path.contains(char::is_whitespace) {
                return Err(fail("a queue URL needs a path naming the queue"));
            }
            return Ok(Self::Sqs { queue_url: s.to_string() });
        }
        Err(fail("unknown scheme"))
    }
}

impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Sqs { queue_url } => f.write_str(queue_url),
            Self::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

/// S3 general-purpose bucket naming rules (AWS docs, "Bucket naming rules"):
/// 3-63 characters, lowercase letters, digits, dots and hyphens, beginning and
/// ending with a letter or digit.
fn is_bucket_name(b: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(b.chars().next())
        && edge_ok(b.chars().last())
}

/// Joins an S3 prefix and a relative key without doubling or leading slashes.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}/{key}") }
}

/// The stream's name from its ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`),
/// or the whole string when it is not such an ARN.
pub(crate) fn stream_name(arn: &str) -> &str {
    arn.rsplit_once(":stream/").map_or(arn, |(_, name)| name)
}

/// `s` as one safe key or path segment: characters outside `A-Za-z0-9._:-`
/// become `_`, and an empty, `.` or `..` segment becomes `_`, so no input can
/// climb out of the sink's root or add a level.
pub(crate) fn segment(s: &str) -> String {
    if s.is_empty() || s == "." || s == ".." {
        return "_".to_string();
    }
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._:-".contains(c) { c } else { '_' })
        .collect()
}

/// An S3 client for the sinks. With an explicit endpoint (`AWS_ENDPOINT_URL`:
/// moto, MinIO, LocalStack) path-style addressing is forced, because those
/// servers do not resolve `bucket.host` names. `AWS_ENDPOINT_URL_S3` pointing
/// at an IP address also works: the S3 endpoint rules use path style for IPs.
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(aws.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SQS client for the dead-letter queue (endpoint from the SDK config and
/// `AWS_ENDPOINT_URL_SQS`, as the SDK reads them).
pub fn sqs_client(aws: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(aws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("s3://my-bucket", "my-bucket", ""; "bucket only")]
    #[test_case("s3://my-bucket/", "my-bucket", ""; "trailing slash")]
    #[test_case("s3://my.bucket-1/spill/kbq/", "my.bucket-1", "spill/kbq"; "prefix")]
    fn parses_s3(url: &str, bucket: &str, prefix: &str) {
        let parsed: SinkUrl = url.parse().unwrap();
        assert_eq!(parsed, SinkUrl::S3 { bucket: bucket.into(), prefix: prefix.into() });
    }

    #[test]
    fn parses_file_and_sqs() {
        let abs: SinkUrl = "file:///tmp/kbq/state".parse().unwrap();
        assert_eq!(abs, SinkUrl::File { path: "/tmp/kbq/state".into() });
        assert_eq!(abs.to_string(), "file:///tmp/kbq/state");
        let rel: SinkUrl = "file://out/dlq.ndjson".parse().unwrap();
        assert_eq!(rel, SinkUrl::File { path: "out/dlq.ndjson".into() });
        let q = "https://sqs.eu-west-1.amazonaws.com/123456789012/kbq-dlq";
        assert_eq!(q.parse::<SinkUrl>().unwrap(), SinkUrl::Sqs { queue_url: q.into() });
        let local = "http://127.0.0.1:5000/123456789012/q";
        assert_eq!(local.parse::<SinkUrl>().unwrap().to_string(), local);
    }

    #[test]
    fn segments_are_safe() {
        assert_eq!(segment("p.d.t"), "p.d.t");
        assert_eq!(segment(".."), "_");
        assert_eq!(segment("a/b c"), "a_b_c");
        assert_eq!(stream_name("arn:aws:kinesis:us-east-1:1:stream/events"), "events");
        assert_eq!(stream_name("local"), "local");
    }

    #[test_case("", "unknown scheme")]
    #[test_case("ftp://x/y", "unknown scheme")]
    #[test_case("s3://", "bucket names")]
    #[test_case("s3://UPPER/x", "bucket names")]
    #[test_case("s3://ab", "bucket names")]
    #[test_case("s3://-bucket", "bucket names")]
    #[test_case("s3://bucket/a//b", "prefix")]
    #[test_case("s3://bucket/a/../b", "prefix")]
    #[test_case("file://", "needs a path")]
    #[test_case("https://sqs.us-east-1.amazonaws.com", "needs a path")]
    #[test_case("https:///q", "needs a host")]
    fn rejects(url: &str, why: &str) {
        let err = url.parse::<SinkUrl>().unwrap_err();
        assert!(err.why.contains(why), "{url}: {}", err.why);
        assert!(err.to_string().contains("accepted forms: s3://"), "{err}");
    }
}
