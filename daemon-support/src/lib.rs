//! What every long-running binary of the workspace (`edge-agent`, `cloud-relay`,
//! `local-aws`) does the same way, in one copy:
//!
//! - [`lock`]: one process owns each state directory. [`StateLock`] holds an advisory
//!   lock (`flock(2)`) on `<dir>/.lock` for as long as the process lives and writes
//!   its pid and command line into it, so a second instance refuses to start and says
//!   which process holds the directory. The kernel drops the lock when the holder
//!   dies, SIGKILL included: there is never a stale lock to clean up.
//! - [`signal`]: the stop signals. SIGINT (Ctrl-C), SIGTERM (systemd) and SIGHUP (the
//!   terminal closed) all mean "stop cleanly".
//! - [`child`]: a child process that cannot outlive its parent, even a parent killed
//!   with SIGKILL (`PR_SET_PDEATHSIG`).
//! - [`report`]: an error and its causes as one line per cause, each said once.
//! - `sdk_http` (feature `sdk-http`): the HTTPS client every AWS SDK client uses.

pub mod child;
pub mod lock;
pub mod report;
#[cfg(feature = "sdk-http")]
pub mod sdk_http;
pub mod signal;

pub use child::stop_with_parent;
pub use lock::{Holder, LockError, StateLock};
pub use report::report;
pub use signal::shutdown_signal;
