//! [`Endpoint`]: where a BigQuery API is served and how to reach it, decided
//! once from its URL. `https://` means Google: TLS and Application Default
//! Credentials; `http://` means the local emulator: plain text, no
//! credentials. Everything that connects (the Lambda, `backfill`, `redrive`,
//! `check`) takes this type, so no caller looks at the scheme again.

use std::fmt;
use std::str::FromStr;

use super::auth::AuthMode;

/// A BigQuery endpoint (Storage Write gRPC or REST), parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://HOST[:PORT]`: TLS, credentials from Application Default Credentials.
    Google { url: String },
    /// `http://HOST:PORT`: the emulator, plain text, no credentials.
    Emulator { url: String },
}

/// A URL that is not an endpoint; the text says what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected https://HOST[:PORT] or http://HOST:PORT (e.g. the emulator), without a path")]
pub struct EndpointError;

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri: http::Uri = s.trim().parse().map_err(|_| EndpointError)?;
        let bare = uri.path() == "/" || uri.path().is_empty();
        if uri.host().is_none() || !bare || uri.query().is_some() {
            return Err(EndpointError);
        }
        let url = s.trim().trim_end_matches('/').to_string();
        match uri.scheme_str() {
            Some("https") => Ok(Self::Google { url }),
            Some("http") => Ok(Self::Emulator { url }),
            _ => Err(EndpointError),
        }
    }
}

impl Endpoint {
    /// The URL, without a trailing slash.
    pub fn url(&self) -> &str {
        match self {
            Self::Google { url } | Self::Emulator { url } => url,
        }
    }

    /// Whether this is the plain-text emulator.
    pub fn is_emulator(&self) -> bool {
        matches!(self, Self::Emulator { .. })
    }

    /// How requests to this endpoint authenticate.
    pub fn auth(&self) -> AuthMode {
        match self {
            Self::Google { .. } => AuthMode::ApplicationDefault,
            Self::Emulator { .. } => AuthMode::None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url())
    }
}

/// Lets a test compare an endpoint with the URL it was parsed from.
impl PartialEq<&str> for Endpoint {
    fn eq(&self, other: &&str) -> bool {
        self.url() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_decides_tls_and_credentials() {
        let google: Endpoint = "https://bigquerystorage.googleapis.com/".parse().unwrap();
        assert_eq!(google, "https://bigquerystorage.googleapis.com");
        assert_eq!(google.auth(), AuthMode::ApplicationDefault);
        assert!(!google.is_emulator());
        let emulator: Endpoint = "http://127.0.0.1:9060".parse().unwrap();
        assert_eq!(emulator.auth(), AuthMode::None);
        assert!(emulator.is_emulator());
        assert_eq!(emulator.url(), "http://127.0.0.1:9060");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["ftp://host", "bigquerystorage.googleapis.com", "https://h/path", "", "http://"]
        {
            assert_eq!(bad.parse::<Endpoint>(), Err(EndpointError), "{bad}");
        }
    }
}
