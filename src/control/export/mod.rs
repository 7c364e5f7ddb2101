//! The policy rendered for other engines.
//!
//! * [`nft`]: the policy as an nftables rule set (`op25b export-nft`, and the fallback's
//!   rules);
//! * [`fallback`]: `failure_mode: open`: a Linux bridge and those rules carry the
//!   traffic while op25b is not running (`ip`, `nft`).
//!
//! Who may call it: the daemon (start, reload, stop) and the CLI (`export-nft`). It reads
//! the compiled config and nothing of the running process.

pub mod fallback;
pub mod nft;
