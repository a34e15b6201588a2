//! `CREATE_TABLES=true`: a routed table that does not exist is created with
//! `tables.insert` from the schema at `TABLE_SCHEMA_URL` (`s3://BUCKET/KEY`
//! or `file:///PATH`, in the BigQuery JSON schema format, the placeholder
//! filled with the record's value). Someone creating it first (409) is as
//! good as creating it.

use super::template::TableTemplate;
use crate::bigquery::{TablesClient, TablesError};
use crate::pb::storage::TableSchema;
use crate::schema_json::parse_bq_schema;
use crate::table::TableName;

/// Where a routed table's schema is read from; the text may carry the
/// template's placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaUrl(String);

impl SchemaUrl {
    /// Checks the form of `s` (with its placeholder filled by a probe value).
    ///
    /// # Errors
    /// The accepted forms, in words.
    pub fn parse(s: &str, field: Option<&str>) -> Result<Self, String> {
        let expected = "s3://BUCKET/KEY or file:///PATH of a BigQuery JSON schema";
        let probe = match field {
            Some(f) => s.replace(&format!("{{{f}}}"), "x"),
            None => s.to_string(),
        };
        if probe.contains(['{', '}']) {
            return Err(format!(
                "{expected}; the only placeholder allowed is BIGQUERY_TABLE's ({})",
                field.map_or_else(|| "none".to_string(), |f| format!("{{{f}}}"))
            ));
        }
        match Location::of(&probe) {
            Some(_) => Ok(Self(s.to_string())),
            None => Err(expected.to_string()),
        }
    }

    /// Whether the schema is read from S3 (the AWS configuration is then
    /// loaded at cold start).
    pub fn is_s3(&self) -> bool {
        self.0.starts_with("s3://")
    }

    /// Reads and parses the schema at this URL as written (no placeholder
    /// filled): what `check` probes.
    ///
    /// # Errors
    /// [`CreateError`] saying why it cannot be read.
    pub async fn read(&self, s3: Option<&aws_sdk_s3::Client>) -> Result<TableSchema, CreateError> {
        read_schema(&self.0, s3).await
    }

    /// The URL for one route value.
    fn for_value(&self, template: &TableTemplate, value: &str) -> String {
        template.fill(&self.0, value)
    }
}

impl std::fmt::Display for SchemaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Location<'a> {
    S3 { bucket: &'a str, key: &'a str },
    File(&'a str),
}

impl<'a> Location<'a> {
    fn of(url: &'a str) -> Option<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/')?;
            return (!bucket.is_empty() && !key.is_empty() && !key.ends_with('/'))
                .then_some(Self::S3 { bucket, key });
        }
        let path = url.strip_prefix("file://")?;
        (path.starts_with('/') && path.len() > 1).then_some(Self::File(path))
    }
}

/// Why a table could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// For good: the schema is missing or invalid, or the service refused
    /// the table (no such dataset, no permission). Its records are dead
    /// letters (`no_such_table`).
    #[error("{0}")]
    Permanent(String),
    /// Worth another invocation: the records go back to Kinesis.
    #[error("{0}")]
    Transient(String),
}

/// Creates routed tables.
#[derive(Clone, Debug)]
pub struct TableCreator {
    pub tables: TablesClient,
    pub schema_url: SchemaUrl,
    /// For `s3://` schema URLs.
    pub s3: Option<aws_sdk_s3::Client>,
}

impl TableCreator {
    /// Creates `table` (the template's table for `value`); `Ok` also when
    /// someone else created it first.
    ///
    /// # Errors
    /// [`CreateError`], permanent or transient.
    pub async fn create(
        &self,
        template: &TableTemplate,
        table: &TableName,
        value: &str,
    ) -> Result<(), CreateError> {
        let url = self.schema_url.for_value(template, value);
        let schema = read_schema(&url, self.s3.as_ref()).await?;
        match self.tables.insert(table, &schema).await {
            Ok(_) => {
                tracing::info!(%table, schema = %url, "created routed table");
                Ok(())
            }
            Err(TablesError::Exists(_)) => Ok(()),
            Err(e) if e.is_transient() => {
                Err(CreateError::Transient(format!("creating {table}: {e}")))
            }
            Err(e) => Err(CreateError::Permanent(format!("creating {table}: {e}"))),
        }
    }
}

/// The BigQuery JSON schema at `url` (`s3://` read with `s3`).
async fn read_schema(
    url: &str,
    s3: Option<&aws_sdk_s3::Client>,
) -> Result<TableSchema, CreateError> {
    let text = match Location::of(url) {
        Some(Location::File(path)) => tokio::fs::read_to_string(path).await.map_err(|e| {
            let why = format!("schema {url}: {e}");
            match e.kind() {
                std::io::ErrorKind::NotFound => CreateError::Permanent(why),
                _ => CreateError::Transient(why),
            }
        })?,
        Some(Location::S3 { bucket, key }) => s3_text(s3, url, bucket, key).await?,
        None => return Err(CreateError::Permanent(format!("schema URL {url:?} is not usable"))),
    };
    parse_bq_schema(&text).map_err(|e| {
        CreateError::Permanent(format!("schema {url} is not a BigQuery JSON schema: {e}"))
    })
}

async fn s3_text(
    s3: Option<&aws_sdk_s3::Client>,
    url: &str,
    bucket: &str,
    key: &str,
) -> Result<String, CreateError> {
    let Some(s3) = s3 else {
        return Err(CreateError::Permanent(format!("schema {url}: no S3 client")));
    };
    let got = s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| {
        let why = format!("schema {url}: {}", aws_sdk_s3::error::DisplayErrorContext(&e));
        match e.as_service_error() {
            Some(s) if s.is_no_such_key() => CreateError::Permanent(why),
            _ => CreateError::Transient(why),
        }
    })?;
    let bytes = got
        .body
        .collect()
        .await
        .map_err(|e| CreateError::Transient(format!("schema {url}: {e}")))?
        .into_bytes();
    String::from_utf8(bytes.to_vec())
        .map_err(|_| CreateError::Permanent(format!("schema {url} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_urls_are_s3_objects_or_files_with_the_tables_placeholder() {
        assert!(SchemaUrl::parse("s3://b/schemas/{t}.json", Some("t")).is_ok());
        assert!(SchemaUrl::parse("file:///etc/schema.json", Some("t")).is_ok());
        assert!(SchemaUrl::parse("s3://b/{other}.json", Some("t")).is_err());
        assert!(SchemaUrl::parse("s3://b/", Some("t")).is_err());
        assert!(SchemaUrl::parse("s3://b", None).is_err());
        assert!(SchemaUrl::parse("https://x/s.json", None).is_err());
        assert!(SchemaUrl::parse("file://relative", None).is_err());
        let template: TableTemplate = "p.d.e_{t}".parse().unwrap();
        let url = SchemaUrl::parse("s3://b/{t}/schema.json", Some("t")).unwrap();
        assert_eq!(url.for_value(&template, "click"), "s3://b/click/schema.json");
    }
}
