//! `net.ipv4.tcp_syncookies = 2` while the fast path runs, and the previous value put back
//! when it stops.
//!
//! With syncookies always on, the kernel answers every SYN with a cookie and keeps no state,
//! which is what lets XDP answer a connection's first request without any kernel socket.

use anyhow::Context;

/// Where the syncookie mode of the daemon's network namespace is set.
const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

/// Restores `tcp_syncookies` on drop.
pub(super) struct RestoreSyncookies(Option<String>);

impl Drop for RestoreSyncookies {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            restore_syncookies(&previous);
        }
    }
}

/// Sets `net.ipv4.tcp_syncookies = 2` in this network namespace (logging its cost), and
/// returns the guard that puts the previous value back when dropped.
///
/// # Errors
/// The sysctl cannot be read or written (not root, or no `/proc/sys` in this namespace).
pub(super) fn enable() -> anyhow::Result<RestoreSyncookies> {
    enable_syncookies().map(|before| RestoreSyncookies(Some(before)))
}

fn enable_syncookies() -> anyhow::Result<String> {
    let before =
        std::fs::read_to_string(SYNCOOKIES).with_context(|| format!("cannot read {SYNCOOKIES}"))?;
    let before = before.trim().to_string();
    std::fs::write(SYNCOOKIES, "2\n").with_context(|| {
        format!("cannot set net.ipv4.tcp_syncookies=2 (writing {SYNCOOKIES}); the XDP fast path needs it")
    })?;
    tracing::warn!(
        previous = before.as_str(),
        "XDP fast path: set net.ipv4.tcp_syncookies=2 in this network namespace. Cost: every \
         TCP handshake on every port now uses syncookies, so clients without TCP timestamps \
         lose window scaling and SACK (and their MSS is rounded down to one of 4 values), on \
         443 too; and a first request sent more than about 2 minutes after the handshake is \
         reset (the cookie has expired)"
    );
    Ok(before)
}

/// Puts the syncookie mode back as it was before [`enable_syncookies`], unless somebody else
/// changed it meanwhile.
fn restore_syncookies(previous: &str) {
    let now = std::fs::read_to_string(SYNCOOKIES).unwrap_or_default();
    if now.trim() != "2" || previous == "2" {
        return;
    }
    match std::fs::write(SYNCOOKIES, format!("{previous}\n")) {
        Ok(()) => tracing::info!(
            restored = previous,
            "XDP fast path stopped: net.ipv4.tcp_syncookies restored"
        ),
        Err(e) => tracing::warn!("cannot restore net.ipv4.tcp_syncookies={previous}: {e}"),
    }
}
