//! The subcommands that have grown beyond a few lines, one file each.

pub mod config;
pub mod inspect;
pub mod serve;
pub mod token;
