//! End-to-end tests of edge-a2i: they start the real `edge-agent` and `cloud-relay`
//! binaries (built by `cargo build --workspace`; `cargo test --workspace` builds them)
//! against real servers on loopback, and count what arrives. The tests are the
//! `[[test]]` targets beside this crate's Cargo.toml; this library is empty and only
//! gives the package the target Cargo asks for.
