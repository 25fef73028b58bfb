//! Regression tests for the defects of the security review (issue 14), one module per area.
//! Each drives the real binary with the bytes that triggered its defect and fails on a build
//! without the fix. One test binary, so the areas share one link.

mod admintls;
#[path = "../common/mod.rs"]
mod common;
mod conn;
mod fuzz;
mod fwd;
mod ident;
mod path;
mod reload;
mod stale;
