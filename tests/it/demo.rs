//! The README's "run it" command, small: the demo's own exactly-once check
//! passes, and every fault it injects actually happened (spillover, appends
//! in doubt resolved by the backfill, a killed invocation, a lost response,
//! dead letters).

use kinesis_bigquery::demo::{self, DemoArgs, FaultSet};
use kinesis_bigquery::rows::RowFormat;

fn args(format: RowFormat) -> DemoArgs {
    DemoArgs {
        records: 800,
        shards: 2,
        batch_size: 250,
        format,
        faults: "all".parse::<FaultSet>().unwrap(),
        seed: 11,
        keep: false,
        quiet: true,
    }
}

#[tokio::test]
async fn demo_passes_its_exactly_once_check_with_every_fault() -> anyhow::Result<()> {
    let report = demo::run(&args(RowFormat::Proto)).await?;
    println!("{report}");
    assert!(report.exactly_once(), "{report}");
    assert!(report.passed(), "{report}");
    assert!(report.spilled_records > 0, "the outage spilled");
    assert!(report.backfill.already_in_table > 0, "in-doubt rows were recognised");
    assert_eq!(report.backfill.rows + report.backfill.already_in_table, report.spilled_records);
    assert_eq!((report.esm.crashes, report.esm.lost_responses), (1, 1));
    assert_eq!(report.dead_lettered_records, report.corrupt.total());
    assert!(report.corrupt.total() > 0);
    assert_eq!(report.rows_in_table, report.good);
    Ok(())
}

#[tokio::test]
async fn demo_in_arrow_without_faults() -> anyhow::Result<()> {
    let mut a = args(RowFormat::Arrow);
    a.faults = "none".parse::<FaultSet>().unwrap();
    let report = demo::run(&a).await?;
    assert!(report.passed(), "{report}");
    assert_eq!(report.spilled_records, 0);
    assert_eq!(report.rows_in_table, report.good);
    Ok(())
}
