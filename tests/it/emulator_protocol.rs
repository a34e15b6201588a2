//! The AppendRows connection protocol: first request, routing header,
//! aborting in-flight requests after a failure, the size limit,
//! `updated_schema`, the idle timeout and concurrent writers.

use crate::emulator_support;

use std::time::Duration;

use emulator_support::*;
use kinesis_bigquery::emulator::EmulatorConfig;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::write_stream::Type as StreamType;
use prost_types::field_descriptor_proto::{Label, Type as PType};
use tonic::Code;

#[tokio::test]
async fn first_request_needs_stream_and_schema() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;

    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let err = conn
        .append(request("", Some(&simple_descriptor()), None, vec![row(1, "a")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("write_stream"), "{}", err.message());

    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let err =
        conn.append(request(&t.default_stream(), None, None, vec![row(1, "a")])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("writer_schema"), "{}", err.message());
    assert!(emu.read_rows(&t)?.is_empty());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn routing_header_is_recorded_and_must_match_when_not_empty() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let first =
        || request(&t.default_stream(), Some(&simple_descriptor()), None, vec![row(1, "a")]);

    // Empty (as Google's Python GAPIC sends it) and absent are tolerated.
    let mut conn = Conn::open_with_routing(&mut c, Some("")).await?;
    assert!(outcome(&conn.append(first()).await?).is_ok());
    let mut conn = Conn::open_with_routing(&mut c, None).await?;
    assert!(outcome(&conn.append(first()).await?).is_ok());
    // Percent-encoded slashes are decoded.
    let encoded = format!("write_stream={}", t.default_stream().replace('/', "%2F"));
    let mut conn = Conn::open_with_routing(&mut c, Some(&encoded)).await?;
    assert!(outcome(&conn.append(first()).await?).is_ok());
    // A different stream is refused.
    let other = format!("write_stream={}", table_name().default_stream());
    let mut conn = Conn::open_with_routing(&mut c, Some(&other)).await?;
    let err = conn.append(first()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    assert_eq!(emu.routing_headers(), vec![String::new(), encoded, other]);
    assert_eq!(emu.read_rows(&t)?.len(), 3);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn in_flight_requests_after_a_failure_on_an_explicit_stream_are_aborted() -> anyhow::Result<()>
{
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Committed).await;
    let mut conn = Conn::open(&mut c, &s).await?;
    assert!(
        outcome(
            &conn
                .append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")]))
                .await?
        )
        .is_ok()
    );

    // Hold the server back so the three pipelined requests are all in flight.
    emu.faults().delay("AppendRows", Duration::from_millis(300));
    conn.send(request("", None, Some(5), vec![row(2, "b")])).await; // OUT_OF_RANGE
    conn.send(request("", None, Some(1), vec![row(3, "c")])).await;
    conn.send(request("", None, Some(2), vec![row(4, "d")])).await;
    assert_eq!(outcome(&conn.next().await?).unwrap_err().0, Code::OutOfRange);
    assert_eq!(outcome(&conn.next().await?).unwrap_err().0, Code::Aborted);
    assert_eq!(outcome(&conn.next().await?).unwrap_err().0, Code::Aborted);
    emu.faults().clear();

    // Resending in order on the same connection works.
    assert_eq!(
        outcome(&conn.append(request("", None, Some(1), vec![row(3, "c")])).await?),
        Ok(Some(1))
    );
    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "3"]);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn oversized_requests_are_invalid_argument() -> anyhow::Result<()> {
    let emu = start_with(EmulatorConfig { max_request_bytes: 2_000, ..Default::default() }).await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let big = "x".repeat(3_000);
    let r = conn
        .append(request(&t.default_stream(), Some(&simple_descriptor()), None, vec![row(1, &big)]))
        .await?;
    let (code, msg) = outcome(&r).unwrap_err();
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        msg.starts_with("AppendRows request too large: ") && msg.ends_with(" limit 2000"),
        "{msg}"
    );
    assert!(emu.read_rows(&t)?.is_empty());
    // The connection stays usable for a request under the limit (the refused
    // request registered no writer schema, so it is sent again).
    let r =
        conn.append(request("", Some(&simple_descriptor()), None, vec![row(2, "small")])).await?;
    assert!(outcome(&r).is_ok(), "{r:?}");
    assert_eq!(ids(&emu.read_rows(&t)?), ["2"]);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_new_column_shows_up_once_as_updated_schema() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(request(&t.default_stream(), Some(&simple_descriptor()), None, vec![row(1, "a")]))
        .await?;
    assert!(r.updated_schema.is_none());

    emu.add_columns(&t, vec![col("extra", Type::String, Mode::Nullable)])?;
    let r = conn.append(request("", None, None, vec![row(2, "b")])).await?;
    let updated = r.updated_schema.expect("updated_schema on the next response");
    assert_eq!(updated.fields.last().map(|f| f.name.as_str()), Some("extra"));
    let r = conn.append(request("", None, None, vec![row(3, "c")])).await?;
    assert!(r.updated_schema.is_none(), "reported once");

    // A writer schema with the new column is now accepted (in-line on _default).
    let mut d = simple_descriptor();
    d.field.push(pfield("extra", 3, PType::String, Label::Optional));
    let r = conn
        .append(request(
            &t.default_stream(),
            Some(&d),
            None,
            vec![Enc::new().int64(1, 4).string(3, "e").done()],
        ))
        .await?;
    assert!(outcome(&r).is_ok());
    let rows = emu.read_rows(&t)?;
    assert_eq!(rows[0], serde_json::json!({"id": "1", "name": "a", "extra": null}));
    assert_eq!(rows[3], serde_json::json!({"id": "4", "name": null, "extra": "e"}));

    // Only NULLABLE columns can be added.
    assert!(emu.add_columns(&t, vec![col("req", Type::String, Mode::Required)]).is_err());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn idle_connections_are_closed_aborted() -> anyhow::Result<()> {
    let emu = start_with(EmulatorConfig {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    assert!(
        outcome(
            &conn
                .append(request(
                    &t.default_stream(),
                    Some(&simple_descriptor()),
                    None,
                    vec![row(1, "a")]
                ))
                .await?
        )
        .is_ok()
    );
    let err = conn.next().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains("inactive"), "{}", err.message());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let emu = emu.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(&emu).await;
            let (stream, offsets) = if w % 2 == 0 {
                (create_stream(&mut c, &t, StreamType::Committed).await, true)
            } else {
                (t.default_stream(), false)
            };
            let mut conn = Conn::open(&mut c, &stream).await.unwrap();
            for i in 0..25i64 {
                let schema = (i == 0).then(simple_descriptor);
                let name = if i == 0 { stream.as_str() } else { "" };
                let offset = offsets.then_some(i * 2);
                let rows = vec![row(w * 1000 + i * 2, "x"), row(w * 1000 + i * 2 + 1, "y")];
                let r = conn.append(request(name, schema.as_ref(), offset, rows)).await.unwrap();
                assert!(outcome(&r).is_ok(), "{r:?}");
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let mut got: Vec<i64> = ids(&emu.read_rows(&t)?).iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(got.len(), 8 * 50);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 8 * 50, "no row lost or duplicated");
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn default_streams_multiplex_across_tables_but_explicit_streams_do_not_switch()
-> anyhow::Result<()> {
    let emu = start().await;
    let (a, b) = (table_name(), table_name());
    emu.create_table(&a, simple_schema())?;
    emu.create_table(&b, simple_schema())?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open_with_routing(&mut c, None).await?;
    assert!(
        outcome(
            &conn
                .append(request(
                    &a.default_stream(),
                    Some(&simple_descriptor()),
                    None,
                    vec![row(1, "a")]
                ))
                .await?
        )
        .is_ok()
    );
    let r = conn
        .append(request(&b.default_stream(), Some(&simple_descriptor()), None, vec![row(2, "b")]))
        .await?;
    assert_eq!(r.write_stream, b.default_stream());
    assert!(outcome(&r).is_ok());
    assert_eq!(ids(&emu.read_rows(&a)?), ["1"]);
    assert_eq!(ids(&emu.read_rows(&b)?), ["2"]);

    let s = create_stream(&mut c, &a, StreamType::Committed).await;
    let mut conn = Conn::open(&mut c, &s).await?;
    assert!(
        outcome(
            &conn
                .append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(3, "c")]))
                .await?
        )
        .is_ok()
    );
    let err = conn
        .append(request(&a.default_stream(), Some(&simple_descriptor()), None, vec![row(4, "d")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    emu.shutdown().await;
    Ok(())
}
