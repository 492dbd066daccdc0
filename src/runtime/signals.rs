//! Process signals: the first SIGTERM or SIGINT asks for a graceful stop; a second one exits
//! at once.

/// Completes on the first SIGTERM/SIGINT; a later one ends the process immediately.
pub async fn shutdown_signal() {
    wait_one().await;
    tokio::spawn(async {
        wait_one().await;
        eprintln!("spoki-sync: second signal, exiting now");
        std::process::exit(130);
    });
}

async fn wait_one() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
