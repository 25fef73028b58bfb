//! Regression tests for the defects of the security review (issue 14), one module per area.
//! Each drives the real binary with the bytes that triggered its defect and fails on a build
//! without the fix. One test binary, so the areas share one link.

#[path = "../common/mod.rs"]
mod common;
mod fuzz;
