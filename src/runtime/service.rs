//! systemd integration without a library: `sd_notify` messages over `$NOTIFY_SOCKET` (READY,
//! RELOADING, STOPPING, STATUS, WATCHDOG) and a watchdog that pings only while the main loops
//! keep ticking, so a stuck daemon is restarted rather than kept alive by a healthy timer.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::live::Heartbeat;

/// Sends one notification; errors are logged at debug level and otherwise ignored (systemd
/// not listening is not a reason to stop).
pub fn notify(state: &str) {
    #[cfg(unix)]
    {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        if let Err(error) = send(&path, state) {
            tracing::debug!(%error, "sd_notify failed");
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

#[cfg(unix)]
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    socket.send_to(state.as_bytes(), path)?;
    Ok(())
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every third of its interval while `heartbeat` is fresher than half of
/// it; stops pinging when the loop is stuck, so systemd restarts the daemon.
pub async fn run_watchdog(interval: Duration, heartbeat: Heartbeat, cancel: CancellationToken) {
    let period = interval / 3;
    loop {
        if heartbeat.age() < interval / 2 {
            notify("WATCHDOG=1");
        } else {
            tracing::error!(
                stuck_for_ms = heartbeat.age().as_millis() as u64,
                "the main loop is not going round; no watchdog ping"
            );
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("notify.sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_loop_ages() {
        let hb = Heartbeat::new();
        hb.beat();
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(hb.age() >= Duration::from_secs(20));
        hb.beat();
        assert!(hb.age() < Duration::from_secs(1));
    }
}
