//! `spoki-sim`: the simulator on its own (the daemon's `spoki-sync sim` runs the same).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// An in-memory Spoki on loopback, for trying spoki-sync without an account.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8790")]
    listen: SocketAddr,
    /// The only `X-Spoki-Api-Key` accepted.
    #[arg(long, default_value = "sim-api-key")]
    api_key: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match spoki_sim::run_cli(args.listen, args.api_key).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spoki-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
