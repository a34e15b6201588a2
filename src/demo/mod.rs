//! The `demo` command (see generate.rs).

pub mod generate;
