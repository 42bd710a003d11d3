//! The `warrant` command's library side: the configuration file of
//! `warrant run` ([`config`]), shared by the binary, its tests and the
//! docker-compose check.
#![deny(missing_docs)]

pub mod config;
