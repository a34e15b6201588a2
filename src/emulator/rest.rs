//! The REST subset of BigQuery v2 that Google's `google-cloud-bigquery`
//! client needs to inspect tables (`tables.insert/get/patch/update/delete`,
//! `tabledata.list`, datasets accepted implicitly), plus the emulator-only
//! fault endpoint `/emulator/v1/faults`. `tables.patch` honours `If-Match`
//! (412 on a stale etag); a schema change reaches the Storage Write side
//! after the configured delay (see [`super::schema_versions`]).
//!
//! Shapes follow the real API: resources carry `kind`, `id`, `etag`,
//! `tableReference`; numbers that may exceed 2^53 are strings; errors are
//! `{"error":{"code","message","errors":[{"reason"}],"status"}}`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value as JsonValue, json};

use super::errors::EmulatorError;
use super::faults::{FaultSpec, Faults};
use super::schema_json::{fields_from_json, to_bq_schema_json};
use super::store::{Store, TableInfo};
use super::values::{TimestampForm, row_to_rest};
use crate::pb::storage::TableSchema;
use crate::table::TableName;

/// What the REST handlers share.
#[derive(Clone)]
pub struct RestState {
    pub store: Store,
    pub faults: Faults,
}

/// `tabledata.list` pages hold at most this many rows unless `maxResults` asks
/// for fewer (the service caps pages by size; 100k rows is a comfortable stand-in).
const MAX_PAGE_ROWS: usize = 100_000;

pub fn router(state: RestState) -> Router {
    let base = "/bigquery/v2/projects/{project}/datasets";
    Router::new()
        .route(base, post(insert_dataset).get(list_datasets))
        .route(
            &format!("{base}/{{dataset}}"),
            get(get_dataset).delete(delete_dataset).patch(get_dataset),
        )
        .route(&format!("{base}/{{dataset}}/tables"), post(insert_table).get(list_tables))
        .route(
            &format!("{base}/{{dataset}}/tables/{{table}}"),
            get(get_table).patch(patch_table).put(patch_table).delete(delete_table),
        )
        .route(&format!("{base}/{{dataset}}/tables/{{table}}/data"), get(list_rows))
        .route("/emulator/v1/faults", post(add_fault).delete(clear_faults).get(list_faults))
        .with_state(state)
}

struct ApiError(StatusCode, String, &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(code, message, reason) = self;
        let status = match code {
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::CONFLICT => "ALREADY_EXISTS",
            StatusCode::PRECONDITION_FAILED => "FAILED_PRECONDITION",
            _ => "INVALID_ARGUMENT",
        };
        let body = json!({"error": {
            "code": code.as_u16(), "message": message, "status": status,
            "errors": [{"message": message, "domain": "global", "reason": reason}]
        }});
        (code, Json(body)).into_response()
    }
}

impl From<EmulatorError> for ApiError {
    fn from(e: EmulatorError) -> Self {
        match e {
            EmulatorError::TableNotFound(t) => {
                ApiError(StatusCode::NOT_FOUND, format!("Not found: Table {t}"), "notFound")
            }
            EmulatorError::TableExists(t) => {
                ApiError(StatusCode::CONFLICT, format!("Already Exists: Table {t}"), "duplicate")
            }
            EmulatorError::EtagMismatch(_) => ApiError(
                StatusCode::PRECONDITION_FAILED,
                "Precondition check failed.".into(),
                "conditionNotMet",
            ),
            EmulatorError::StoredRow(_) => {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "internalError")
            }
            other => ApiError(StatusCode::BAD_REQUEST, other.to_string(), "invalid"),
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into(), "invalid")
}

fn table_name(p: &str, d: &str, t: &str) -> Result<TableName, ApiError> {
    TableName::new(p, d, t).map_err(|e| bad(e.to_string()))
}

fn dataset_resource(project: &str, dataset: &str) -> JsonValue {
    json!({
        "kind": "bigquery#dataset", "id": format!("{project}:{dataset}"), "etag": "emulator",
        "datasetReference": {"projectId": project, "datasetId": dataset}, "location": "US",
    })
}

/// Datasets exist implicitly; creating one always succeeds.
async fn insert_dataset(
    Path(project): Path<String>,
    Json(body): Json<JsonValue>,
) -> Json<JsonValue> {
    let dataset = body
        .pointer("/datasetReference/datasetId")
        .and_then(JsonValue::as_str)
        .unwrap_or("dataset");
    Json(dataset_resource(&project, dataset))
}

async fn list_datasets(Path(project): Path<String>) -> Json<JsonValue> {
    Json(json!({"kind": "bigquery#datasetList", "datasets": [], "project": project}))
}

async fn get_dataset(Path((project, dataset)): Path<(String, String)>) -> Json<JsonValue> {
    Json(dataset_resource(&project, &dataset))
}

async fn delete_dataset() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn ms(t: &prost_types::Timestamp) -> String {
    (t.seconds * 1000 + i64::from(t.nanos) / 1_000_000).to_string()
}

/// The table's etag: it changes with the table's metadata (here: its schema),
/// not with the rows streamed into it, so a writer can patch a busy table.
fn etag(version: u64) -> String {
    format!("\"emulator-v{version}\"")
}

/// The version an `If-Match` etag names; `*` or no header means "any".
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let value = value.to_str().map_err(|_| bad("If-Match is not ASCII"))?.trim();
    if value == "*" {
        return Ok(None);
    }
    let version = value
        .trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix("emulator-v")
        .and_then(|v| v.parse().ok());
    // An etag this emulator never issued matches no version of the table.
    Ok(Some(version.unwrap_or(u64::MAX)))
}

fn table_resource(info: &TableInfo) -> JsonValue {
    let n = &info.name;
    let mut resource = json!({
        "kind": "bigquery#table",
        "id": format!("{}:{}.{}", n.project(), n.dataset(), n.table()),
        "etag": etag(info.version),
        "selfLink": format!("/bigquery/v2/projects/{}/datasets/{}/tables/{}", n.project(), n.dataset(), n.table()),
        "tableReference": {"projectId": n.project(), "datasetId": n.dataset(), "tableId": n.table()},
        "schema": {"fields": to_bq_schema_json(&info.schema)},
        "numRows": info.num_rows.to_string(),
        "numBytes": "0",
        "creationTime": ms(&info.created),
        "lastModifiedTime": ms(&info.modified),
        "type": "TABLE",
        "location": "US",
    });
    if !info.primary_key.is_empty() {
        resource["tableConstraints"] = json!({"primaryKey": {"columns": info.primary_key}});
    }
    resource
}

/// `tableConstraints.primaryKey.columns` of a table resource, if present.
fn primary_key_of(body: &JsonValue) -> Result<Option<Vec<String>>, ApiError> {
    match body.pointer("/tableConstraints/primaryKey/columns") {
        None | Some(JsonValue::Null) => Ok(None),
        Some(JsonValue::Array(cols)) => cols
            .iter()
            .map(|c| c.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| bad("tableConstraints.primaryKey.columns must be column names")),
        Some(_) => Err(bad("tableConstraints.primaryKey.columns must be an array")),
    }
}

fn schema_of(body: &JsonValue) -> Result<Option<TableSchema>, ApiError> {
    match body.pointer("/schema/fields") {
        None | Some(JsonValue::Null) => Ok(None),
        Some(f) => Ok(Some(TableSchema {
            fields: fields_from_json(f, "").map_err(|e| bad(e.to_string()))?,
        })),
    }
}

async fn insert_table(
    State(st): State<RestState>,
    Path((project, dataset)): Path<(String, String)>,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    let table = body
        .pointer("/tableReference/tableId")
        .and_then(JsonValue::as_str)
        .ok_or_else(|| bad("tableReference.tableId is required"))?;
    let name = table_name(&project, &dataset, table)?;
    let primary_key = primary_key_of(&body)?;
    st.store.create_table(&name, schema_of(&body)?.unwrap_or_default())?;
    if let Some(key) = primary_key
        && let Err(e) = st.store.set_primary_key(&name, key)
    {
        st.store.delete_table(&name)?;
        return Err(e.into());
    }
    Ok(Json(table_resource(&st.store.table_info(&name)?)))
}

async fn list_tables(
    State(_st): State<RestState>,
    Path((_project, _dataset)): Path<(String, String)>,
) -> Json<JsonValue> {
    Json(json!({"kind": "bigquery#tableList", "tables": [], "totalItems": 0}))
}

async fn get_table(
    State(st): State<RestState>,
    Path((p, d, t)): Path<(String, String, String)>,
) -> Result<Json<JsonValue>, ApiError> {
    Ok(Json(table_resource(&st.store.table_info(&table_name(&p, &d, &t)?)?)))
}

/// `tables.patch` / `tables.update`: the schema may gain NULLABLE or
/// REPEATED columns (at any depth, RECORD subfields included) and relax
/// REQUIRED to NULLABLE; nothing else. With `If-Match`, only while the
/// table's etag is still that one (412 otherwise), as the service does.
async fn patch_table(
    State(st): State<RestState>,
    Path((p, d, t)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    let name = table_name(&p, &d, &t)?;
    let expected = if_match(&headers)?;
    match schema_of(&body)? {
        Some(schema) => st.store.evolve_schema(&name, schema, expected)?,
        None => {
            let version = st.store.table_info(&name)?.version;
            if expected.is_some_and(|v| v != version) {
                return Err(EmulatorError::EtagMismatch(name.to_string()).into());
            }
        }
    }
    Ok(Json(table_resource(&st.store.table_info(&name)?)))
}

async fn delete_table(
    State(st): State<RestState>,
    Path((p, d, t)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    st.store.delete_table(&table_name(&p, &d, &t)?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `tabledata.list`: `maxResults`, `pageToken` (an opaque row index here),
/// `startIndex`, `formatOptions.useInt64Timestamp`.
async fn list_rows(
    State(st): State<RestState>,
    Path((p, d, t)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<JsonValue>, ApiError> {
    let name = table_name(&p, &d, &t)?;
    let num = |k: &str| {
        q.get(k)
            .map(|v| v.parse::<usize>().map_err(|_| bad(format!("invalid {k}: {v:?}"))))
            .transpose()
    };
    let start = match (num("pageToken")?, num("startIndex")?) {
        (Some(tok), _) => tok,
        (None, Some(i)) => i,
        (None, None) => 0,
    };
    let max = num("maxResults")?.unwrap_or(MAX_PAGE_ROWS).min(MAX_PAGE_ROWS);
    let ts = match q.get("formatOptions.useInt64Timestamp").map(String::as_str) {
        Some("true") | Some("True") | Some("1") => TimestampForm::Int64Micros,
        _ => TimestampForm::FloatSeconds,
    };
    let (schema, rows, total) = st.store.rows_page(&name, start, max)?;
    let mut body = json!({
        "kind": "bigquery#tableDataList",
        "etag": format!("\"rows-{total}\""),
        "totalRows": total.to_string(),
        "rows": rows.iter().map(|r| row_to_rest(r, &schema.fields, ts)).collect::<Vec<_>>(),
    });
    let next = start + rows.len();
    if next < total {
        body["pageToken"] = json!(next.to_string());
    }
    Ok(Json(body))
}

async fn add_fault(
    State(st): State<RestState>,
    body: axum::body::Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let spec: FaultSpec =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid fault: {e}")))?;
    super::lifecycle::apply(spec, &st.store, &st.faults).map_err(|e| bad(e.to_string()))?;
    Ok(Json(json!({"faults": st.faults.active(), "held": st.store.held()})))
}

async fn clear_faults(State(st): State<RestState>) -> StatusCode {
    st.faults.clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(st): State<RestState>) -> Json<JsonValue> {
    Json(json!({"faults": st.faults.active()}))
}
