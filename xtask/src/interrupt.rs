//! Ctrl-C handling shared by the long-running tasks (`demo`, `bench`): SIGINT, SIGTERM and
//! SIGHUP only set a flag, which every step checks, so a task unwinds through its cleanup
//! (processes it started, namespaces, temp files) instead of dying in the middle.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the flag-setting handlers.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

/// Whether a signal asked us to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once a signal asked us to stop.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted by a signal (Ctrl-C, SIGTERM or SIGHUP)");
    }
    Ok(())
}
