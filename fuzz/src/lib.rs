//! Shared code of the fuzz targets: fixed keys and policies ([`fixtures`]) and the
//! invariants several targets assert ([`checks`]).

pub mod checks;
pub mod fixtures;
