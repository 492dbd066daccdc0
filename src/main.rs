//! The `spoki-sync` binary: parses the command line, loads the configuration, starts logging,
//! and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spoki_sync::config::{LogFormat, Settings, resolve_path};

#[derive(Parser)]
#[command(
    name = "spoki-sync",
    version,
    about = "Keeps contacts in Spoki and your own systems in step"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check the configuration; exit 0, or 78 naming every bad key.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Read a CSV as the inbox would and print what would be sent. Sends nothing.
    Plan {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Plan for `inbox/lists/<ID>/`.
        #[arg(long)]
        list: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Run the bundled Spoki simulator.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: SocketAddr,
        #[arg(long, default_value = "sim-api-key")]
        api_key: String,
    },
    /// Quickstart: simulator + daemon on loopback, a sample CSV dropped in, then a summary.
    Demo,
}

const EX_CONFIG: u8 = 78;

fn init_logging(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    let (path, required) = resolve_path(config);
    Settings::load(&path, required).map_err(|e| {
        eprintln!("spoki-sync: {} ({})", e, path.display());
        ExitCode::from(EX_CONFIG)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logging(&settings.log.filter, settings.log.format);
            if let Err(e) = settings.check_runnable() {
                eprintln!("spoki-sync: {e}");
                return ExitCode::from(EX_CONFIG);
            }
            let app = match spoki_sync::app::App::build(settings).await {
                Ok(app) => app,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "cannot start");
                    return ExitCode::FAILURE;
                }
            };
            match app.run_until(spoki_sync::signals::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "stopped with an error");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match load(config.as_deref()) {
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan {
            file,
            config,
            list,
            json,
        } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match spoki_sync::plan::plan(&settings, &file, list).await {
                Ok(plan) => {
                    if json {
                        println!("{}", serde_json::to_string(&plan).unwrap_or_default());
                    } else {
                        println!("{}", plan.human());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("spoki-sync: {}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sim { listen, api_key } => {
            init_logging("info", LogFormat::Human);
            match spoki_sync::sim::run_cli(listen, api_key).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spoki-sync sim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo => match spoki_sync::demo::run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spoki-sync demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
