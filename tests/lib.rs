//! Shared test harness (the DSL lives in `util.rs` of the test binary).
