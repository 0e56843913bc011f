//! Reference models the tests and fuzz targets check the crate against.

pub mod cache;
pub mod gcra;
