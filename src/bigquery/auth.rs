//! Credentials for the Storage Write API.
//!
//! Every RPC, and every AppendRows connection when it opens, carries the
//! headers the official `google-cloud-auth` crate produces from Application
//! Default Credentials: a service-account key file, an `external_account`
//! (workload identity federation, e.g. with an AWS credential source — the way
//! a Lambda reaches GCP without a stored key), or the metadata server. The
//! crate caches tokens and refreshes them before they expire, so asking for
//! headers per call is cheap. The emulator takes no credentials.
//! Header values are never logged.

use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use google_cloud_auth::errors::CredentialsError;
use tonic::metadata::MetadataMap;

use super::error::{Class, Classify, ClientError};

/// OAuth scope for writing table data (fact sheet §1.1).
const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery.insertdata";

/// How the client proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No credentials: the local emulator over plain `http://`.
    None,
    /// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS` file — service
    /// account or external account — or the well-known gcloud file, or the metadata server).
    ApplicationDefault,
}

/// Credentials could not produce request headers.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    #[error("fetching an access token failed")]
    Token(#[source] CredentialsError),
}

impl Classify for AuthError {
    fn class(&self) -> Class {
        match self {
            // The crate knows whether the token endpoint failed transiently.
            Self::Token(e) if e.is_transient() => Class::Transient,
            Self::Token(_) => Class::Permanent,
        }
    }
}

/// The headers source for one client, shared by its clones.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    credentials: Option<Credentials>,
}

impl Auth {
    pub(crate) fn new(mode: &AuthMode) -> Result<Self, ClientError> {
        let credentials = match mode {
            AuthMode::None => None,
            AuthMode::ApplicationDefault => Some(
                credentials::Builder::default()
                    .with_scopes([BIGQUERY_SCOPE])
                    .build()
                    .map_err(ClientError::Credentials)?,
            ),
        };
        Ok(Self { credentials })
    }

    /// Adds the authorization headers (and quota project, if configured) to `metadata`.
    pub(crate) async fn apply(&self, metadata: &mut MetadataMap) -> Result<(), AuthError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        match credentials.headers(http::Extensions::new()).await.map_err(AuthError::Token)? {
            CacheableResource::New { data, .. } => {
                for (name, value) in data.iter() {
                    metadata.as_mut().insert(name.clone(), value.clone());
                }
            }
            // Only answered when we pass an entity tag, which we never do.
            CacheableResource::NotModified => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service-account key signs its token locally (self-signed JWT), so this runs
    /// offline and shows the credentials' headers reach the request metadata.
    #[tokio::test]
    async fn service_account_headers_reach_the_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("key.pem");
        let status = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&pem)
            .status()
            .unwrap();
        assert!(status.success());
        let key = serde_json::json!({
            "type": "service_account",
            "client_email": "writer@proj.iam.gserviceaccount.com",
            "private_key_id": "kid",
            "private_key": std::fs::read_to_string(&pem).unwrap(),
            "project_id": "proj",
        });
        let credentials = credentials::service_account::Builder::new(key)
            .with_access_specifier(credentials::service_account::AccessSpecifier::from_scopes([
                BIGQUERY_SCOPE,
            ]))
            .build()
            .unwrap();
        let auth = Auth { credentials: Some(credentials) };
        let mut md = MetadataMap::new();
        auth.apply(&mut md).await.unwrap();
        let value = md.get("authorization").unwrap().to_str().unwrap();
        assert!(value.starts_with("Bearer ey"), "a bearer JWT");
    }

    #[tokio::test]
    async fn no_auth_adds_nothing() {
        let auth = Auth::new(&AuthMode::None).unwrap();
        let mut md = MetadataMap::new();
        auth.apply(&mut md).await.unwrap();
        assert!(md.is_empty());
    }
}
