//! Sizes at Lambda's limits: the largest batch an event source mapping
//! sends (10,000 records), and records of 1 MiB (Kinesis' default maximum),
//! including one too large for an SQS message once dead-lettered.

use crate::events;
use crate::handler_support;

use handler_support::{World, event, failures, invoke};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_land_once() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    let recs = events::plain_records(0, 10_000, 300);
    let response = invoke(&deps, event(events::event("shardId-000000000003", &recs))?).await?;
    assert!(response.batch_item_failures.is_empty(), "{:?}", failures(&response));
    let ids = world.row_ids()?;
    assert_eq!(ids.len(), 10_000);
    assert!(ids.iter().enumerate().all(|(i, id)| *id == format!("e{i}")));
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_mib_land_and_an_oversized_letter_points_to_s3() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    // Three 1 MiB rows, and a 1 MiB record that is not JSON: its base64 is
    // over SQS's 1 MiB message limit, so the letter carries an S3 pointer.
    let mut recs = events::plain_records(0, 4, MIB);
    if let Some(r) = recs.get_mut(2) {
        r.data = vec![b'x'; MIB];
    }
    let response = invoke(&deps, event(events::event("shardId-000000000004", &recs))?).await?;
    assert!(response.batch_item_failures.is_empty(), "{:?}", failures(&response));
    assert_eq!(world.row_ids()?, ["e0", "e1", "e3"]);
    let rows = world.harness.emulator.read_rows(&world.table)?;
    assert!(rows.iter().all(|r| r.to_string().len() > MIB - 1024));

    let letters = world.dead_letters().await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["data_size"], MIB);
    let pointer = letters[0]["data_s3"].as_str().unwrap_or_default();
    let prefix = format!("s3://{}/spill/dead-letter-payloads/", world.bucket);
    let key = match pointer.strip_prefix(&format!("s3://{}/", world.bucket)) {
        // Exactly one `dead-letter-payloads/` level below the spill prefix.
        Some(key) if pointer.starts_with(&prefix) && !key.contains("payloads/dead-letter") => {
            key.to_string()
        }
        _ => anyhow::bail!("unexpected pointer in {:?}", letters[0]),
    };
    let object =
        world.harness.moto.s3_client().get_object().bucket(&world.bucket).key(&key).send().await?;
    assert_eq!(object.body.collect().await?.into_bytes().len(), MIB);
    world.harness.shutdown().await;
    Ok(())
}
