//! The logic of op25b's offline commands (`op25b classify`), kept out of `cli.rs` so it
//! is tested as a library: the capture reader and the verdict summary. Reads files;
//! never touches a NIC.

pub mod capture;
pub mod summary;
