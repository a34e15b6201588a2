//! The BigQuery REST tables API (v2) — the part the Storage Write API lacks:
//! reading a table's schema with its `etag`, adding columns with
//! `tables.patch` guarded by `If-Match: <etag>` (412 when someone changed the
//! table since), and creating tables with `tables.insert`.
//!
//! `https://` endpoints carry Application Default Credentials with the
//! `bigquery` scope (changing a table's metadata needs more than the
//! Storage Write API's `bigquery.insertdata`); `http://` (the emulator's REST
//! port) carries none. Header values are never logged.

use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use google_cloud_auth::errors::CredentialsError;
use serde_json::{Value as Json, json};

use super::endpoint::Endpoint;
use crate::pb::storage::TableSchema;
use crate::schema_json::{SchemaJsonError, fields_from_json, to_bq_schema_json};
use crate::table::TableName;

/// The public REST endpoint (`BIGQUERY_REST_ENDPOINT`'s default).
pub const DEFAULT_REST_ENDPOINT: &str = "https://bigquery.googleapis.com";

/// OAuth scope for `tables.patch` / `tables.insert`.
const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// A table as `tables.get` shows it: what a guarded patch needs, and what
/// change data capture requires of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableResource {
    pub schema: TableSchema,
    /// Opaque; changes whenever the table's metadata does.
    pub etag: String,
    /// `tableConstraints.primaryKey.columns`; empty when the table has no
    /// primary key (the service then omits `tableConstraints.primaryKey`).
    pub primary_key: Vec<String>,
    /// `maxStaleness` (an interval such as `0-0 0 0:15:0`), when set.
    pub max_staleness: Option<String>,
}

/// Why a tables call failed; the variants are what a caller decides on.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// 412: the etag is stale — re-read, merge, retry.
    #[error("table {0} changed since it was read (412)")]
    Stale(String),
    /// 404: no such table (or dataset).
    #[error("table {0} not found")]
    NotFound(String),
    /// 409 on insert: someone created it first.
    #[error("table {0} already exists")]
    Exists(String),
    /// 429 / 5xx: worth another try.
    #[error("BigQuery REST {status} for {table}: {message}")]
    Transient { table: String, status: u16, message: String },
    /// Anything else the service refused (400 invalid schema change, 403, …).
    #[error("BigQuery REST {status} for {table}: {message}")]
    Refused { table: String, status: u16, message: String },
    #[error("BigQuery REST call for {table} failed")]
    Http {
        table: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("credentials for the BigQuery REST API cannot be loaded")]
    CredentialsSetup(#[source] google_cloud_auth::build_errors::Error),
    #[error("credentials for the BigQuery REST API")]
    Credentials(#[source] CredentialsError),
    #[error("the table resource of {table} has an unreadable schema")]
    Schema {
        table: String,
        #[source]
        source: SchemaJsonError,
    },
}

impl TablesError {
    /// Worth retrying as is (after a backoff): throttling, server errors, a
    /// connection that failed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transient { .. } => true,
            Self::Http { source, .. } => source.is_connect() || source.is_timeout(),
            Self::Credentials(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// A REST tables client; cheap to clone.
#[derive(Clone, Debug)]
pub struct TablesClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
}

impl TablesClient {
    /// `endpoint` is `https://bigquery.googleapis.com` (credentials from ADC)
    /// or `http://HOST:PORT` (no credentials: the emulator).
    ///
    /// # Errors
    /// [`TablesError::CredentialsSetup`] when ADC cannot be loaded.
    pub fn new(endpoint: &Endpoint) -> Result<Self, TablesError> {
        let credentials = if !endpoint.is_emulator() {
            Some(
                credentials::Builder::default()
                    .with_scopes([BIGQUERY_SCOPE])
                    .build()
                    .map_err(TablesError::CredentialsSetup)?,
            )
        } else {
            None
        };
        Ok(Self { http: reqwest::Client::new(), base: endpoint.url().to_string(), credentials })
    }

    fn url(&self, t: &TableName) -> String {
        format!(
            "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
            self.base,
            t.project(),
            t.dataset(),
            t.table()
        )
    }

    async fn authorized(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, TablesError> {
        if let Some(c) = &self.credentials
            && let CacheableResource::New { data, .. } =
                c.headers(http::Extensions::new()).await.map_err(TablesError::Credentials)?
        {
            for (name, value) in data.iter() {
                req = req.header(name, value);
            }
        }
        Ok(req)
    }

    /// `tables.get`: the schema and etag.
    ///
    /// # Errors
    /// [`TablesError::NotFound`], or a transport/service error.
    pub async fn get(&self, t: &TableName) -> Result<TableResource, TablesError> {
        let req = self.authorized(self.http.get(self.url(t))).await?;
        resource(t, send(t, req).await?)
    }

    /// `tables.patch` of the schema, only while the table's etag is `etag`.
    /// `fields` is the whole new field list (existing columns first, unchanged).
    ///
    /// # Errors
    /// [`TablesError::Stale`] when the table changed since `etag` was read;
    /// [`TablesError::Refused`] for a change the service does not allow.
    pub async fn patch_schema(
        &self,
        t: &TableName,
        schema: &TableSchema,
        etag: &str,
    ) -> Result<TableResource, TablesError> {
        let body = json!({"schema": {"fields": to_bq_schema_json(schema)}});
        let req = self.http.patch(self.url(t)).header("If-Match", etag).json(&body);
        let req = self.authorized(req).await?;
        resource(t, send(t, req).await?)
    }

    /// `tables.insert` with `schema`.
    ///
    /// # Errors
    /// [`TablesError::Exists`] when the table is already there.
    pub async fn insert(
        &self,
        t: &TableName,
        schema: &TableSchema,
    ) -> Result<TableResource, TablesError> {
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets/{}/tables",
            self.base,
            t.project(),
            t.dataset()
        );
        let body = json!({
            "tableReference": {"projectId": t.project(), "datasetId": t.dataset(), "tableId": t.table()},
            "schema": {"fields": to_bq_schema_json(schema)},
        });
        let req = self.authorized(self.http.post(url).json(&body)).await?;
        resource(t, send(t, req).await?)
    }
}

async fn send(t: &TableName, req: reqwest::RequestBuilder) -> Result<Json, TablesError> {
    let http = |source| TablesError::Http { table: t.to_string(), source };
    let resp = req.send().await.map_err(http)?;
    let status = resp.status().as_u16();
    let body: Json = resp.json().await.unwrap_or(Json::Null);
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message =
        body.pointer("/error/message").and_then(Json::as_str).unwrap_or("no message").to_string();
    let table = t.to_string();
    Err(match status {
        412 => TablesError::Stale(table),
        404 => TablesError::NotFound(table),
        409 => TablesError::Exists(table),
        429 | 500..=599 => TablesError::Transient { table, status, message },
        _ => TablesError::Refused { table, status, message },
    })
}

fn resource(t: &TableName, body: Json) -> Result<TableResource, TablesError> {
    let fields = body.pointer("/schema/fields").cloned().unwrap_or(Json::Array(Vec::new()));
    let fields = fields_from_json(&fields, "")
        .map_err(|source| TablesError::Schema { table: t.to_string(), source })?;
    let etag = body.get("etag").and_then(Json::as_str).unwrap_or_default().to_string();
    let primary_key = body
        .pointer("/tableConstraints/primaryKey/columns")
        .and_then(Json::as_array)
        .map(|cols| cols.iter().filter_map(Json::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let max_staleness = body.get("maxStaleness").and_then(Json::as_str).map(str::to_string);
    Ok(TableResource { schema: TableSchema { fields }, etag, primary_key, max_staleness })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_primary_key_and_staleness_of_a_resource() -> Result<(), TablesError> {
        let t: TableName = "p.d.t".parse().map_err(|_| TablesError::NotFound("p.d.t".into()))?;
        let body = json!({
            "etag": "\"e1\"",
            "schema": {"fields": [{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}]},
            "tableConstraints": {"primaryKey": {"columns": ["id"]}},
            "maxStaleness": "0-0 0 0:15:0",
        });
        let r = resource(&t, body)?;
        assert_eq!(r.primary_key, ["id"]);
        assert_eq!(r.max_staleness.as_deref(), Some("0-0 0 0:15:0"));
        let plain = resource(&t, json!({"schema": {"fields": []}}))?;
        assert!(plain.primary_key.is_empty());
        assert_eq!(plain.max_staleness, None);
        Ok(())
    }
}
