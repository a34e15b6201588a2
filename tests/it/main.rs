//! The integration tests: one binary (one link of the AWS SDK, arrow and
//! tonic) over one harness. Each module is a former `tests/*.rs` file; the
//! `*_support` modules and `common` are the helpers they share.

mod backfill_support;
mod cdc_support;
mod client_support;
mod common;
mod emulator_support;
mod events;
mod handler_support;
mod rows_support;

mod backfill_cli;
mod backfill_crash;
mod backfill_in_doubt;
mod backfill_lease;
mod backfill_replay;
mod backfill_unlisted;
mod batching;
mod cdc_chaos;
mod cdc_check;
mod cdc_mode;
mod client_append;
mod client_faults;
mod client_rpcs;
mod delivery_bounded_state;
mod delivery_crash_matrix;
mod delivery_deployment;
mod delivery_s3_state;
mod delivery_scenarios;
mod demo;
mod emulator_arrow;
mod emulator_cli;
mod emulator_faults;
mod emulator_lifecycle;
mod emulator_offsets;
mod emulator_protocol;
mod emulator_rest;
mod emulator_schema;
mod emulator_streams;
mod emulator_values;
mod evolve_add;
mod evolve_emulator;
mod handler_cli;
mod handler_failures;
mod handler_sample;
mod handler_sizes;
mod harness;
mod lambda_runtime;
mod redrive_dlq;
mod retry_budget;
mod rows_props;
mod rows_roundtrip;
mod sinks_dlq;
mod sinks_spill;
mod sinks_state;
mod source_kpl;
