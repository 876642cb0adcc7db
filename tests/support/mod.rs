//! Helpers shared by the test binaries that are built from tests/<group>/main.rs.
#![allow(dead_code)]

pub mod cli;
pub mod common;
pub mod reverse;
pub mod sync;
pub mod vectors;
