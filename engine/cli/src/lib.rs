//! The `warrant` command's library side: the configuration file of
//! `warrant run` ([`config`]) and its admin port ([`admin`]), shared by
//! the binary, its tests and the docker-compose check.
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod out;
