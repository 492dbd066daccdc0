//! The `spoki-sync` binary: parses the command line, loads the configuration, starts logging,
//! and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spoki_sync::cli::client::{AdminClient, CliOutcome};
use spoki_sync::config::{LogFormat, Settings, resolve_path};
use spoki_sync::store::StoreError;

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
        /// Start even though `<storage.database>.id` says another database was there (the
        /// file was deleted, emptied or replaced): what was queued in the lost one is gone.
        #[arg(long)]
        allow_new_database: bool,
    },
    /// Check the configuration; exit 0, or 78 naming every bad key.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also check spoki.api_key with one cheap request to Spoki.
        #[arg(long)]
        online: bool,
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
    /// Queue one Spoki action through the running daemon's admin API.
    Cmd {
        /// The action's name, e.g. list_contacts (`spoki-sync actions` lists them all).
        action: String,
        /// The action's params as a JSON object; `@FILE` reads it from a file, `-` from stdin.
        #[arg(long, default_value = "{}")]
        params: String,
        /// Wait until the command ends and print Spoki's answer; exit 1 if it failed.
        #[arg(long)]
        wait: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the running daemon's status.
    Status {
        #[arg(long)]
        json: bool,
        /// Refresh every 2 s, like `top`, until Ctrl-C.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List what was accepted but cannot be sent, newest first (`GET /v1/rejects`).
    Rejects {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this reject id (the previous page's last).
        #[arg(long)]
        before: Option<i64>,
        /// Only those of this source: csv, webhook, mirror, …
        #[arg(long)]
        source: Option<String>,
        /// Only those of this CSV file, named as dropped (e.g. lists/7/x.csv).
        #[arg(long)]
        file: Option<String>,
        /// Print the JSON answer for scripts.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the bundled Spoki simulator.
    #[cfg(feature = "sim")]
    Sim {
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "sim-api-key")]
        api_key: String,
    },
    /// Quickstart: simulator + daemon on loopback, a sample CSV dropped in, then a summary.
    #[cfg(feature = "sim")]
    Demo {
        /// Keep the working folder (database, inbox, reports) instead of removing it.
        #[arg(long)]
        keep: bool,
    },
    /// List the actions `cmd` takes: method, path, rate limit and params.
    Actions {
        /// Show this action alone, in full.
        action: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Print the catalogue as Markdown (docs/actions.md).
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `spoki-sync man | man -l -`.
    Man,
}

const EX_CONFIG: u8 = 78;
/// sysexits: bad command-line input.
const EX_USAGE: u8 = 64;
/// sysexits: the daemon could not be reached.
const EX_UNAVAILABLE: u8 = 69;

/// `--params`: JSON text, `@FILE`, or `-` for stdin.
fn read_params(arg: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    } else {
        arg.to_owned()
    };
    let value: serde_json::Value = serde_json::from_str(&text).context("not valid JSON")?;
    anyhow::ensure!(
        value.is_object(),
        "must be a JSON object, like '{{\"id\": 42}}'"
    );
    Ok(value)
}

/// Starts logging; returns how a reload changes the filter. `RUST_LOG` wins over `log.filter`
/// at start; a reload applies the file's `log.filter`.
fn init_logging(filter: &str, format: LogFormat) -> spoki_sync::runtime::reload::LogFilterHook {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init();
    } else {
        use std::io::IsTerminal as _;
        let colour = spoki_sync::cli::colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        registry
            .with(fmt::layer().with_ansi(colour).with_writer(std::io::stderr))
            .init();
    }
    std::sync::Arc::new(move |text: &str| {
        let new = EnvFilter::try_new(text).map_err(|e| format!("{text:?}: {e}"))?;
        handle.reload(new).map_err(|e| e.to_string())
    })
}

/// Which configuration file was read, in words.
fn source(path: &std::path::Path) -> String {
    if path.is_file() {
        format!("read {}", path.display())
    } else {
        format!(
            "no file read: {} does not exist; defaults and the environment",
            path.display()
        )
    }
}

/// Loads the configuration; on failure prints every problem, one per line, and the file once.
fn load(config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    let (path, required) = resolve_path(config);
    if required && !path.is_file() {
        eprintln!(
            "spoki-sync: config file {} does not exist (or is not a file)",
            path.display()
        );
        return Err(ExitCode::from(EX_CONFIG));
    }
    Settings::load(&path, required).map_err(|e| {
        eprintln!("spoki-sync: invalid configuration ({}):", source(&path));
        for problem in &e.problems {
            eprintln!("spoki-sync: {problem}");
        }
        ExitCode::from(EX_CONFIG)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    spoki_sync::spoki::install_tls_provider();
    match Cli::parse().command {
        Command::Run {
            config,
            allow_new_database,
        } => run(config, allow_new_database).await,
        Command::CheckConfig { config, online } => check_config(config, online).await,
        Command::Plan {
            file,
            config,
            list,
            json,
        } => plan(file, config, list, json).await,
        Command::Cmd {
            action,
            params,
            wait,
            json,
            config,
        } => cmd(action, params, wait, json, config).await,
        Command::Status {
            json,
            watch,
            config,
        } => status(json, watch, config).await,
        Command::Rejects {
            limit,
            before,
            source,
            file,
            json,
            config,
        } => {
            let query = spoki_sync::cli::client::RejectsQuery {
                limit,
                before,
                source,
                file,
            };
            rejects(query, json, config).await
        }
        #[cfg(feature = "sim")]
        Command::Sim { listen, api_key } => {
            let _ = init_logging("info", LogFormat::Human);
            match spoki_sync::sim::run_cli(listen, api_key).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spoki-sync sim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Actions {
            action,
            json,
            markdown,
        } => actions(action.as_deref(), json, markdown),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "spoki-sync", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            use clap::CommandFactory as _;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spoki-sync man: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "sim")]
        Command::Demo { keep } => match spoki_sync::cli::demo::run(keep).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spoki-sync demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `actions`: the catalogue, or one action; an unknown name exits 64 naming the closest.
fn actions(action: Option<&str>, json: bool, markdown: bool) -> ExitCode {
    use spoki_sync::cli::actions::{Format, render};
    let format = match (json, markdown) {
        (true, _) => Format::Json,
        (_, true) => Format::Markdown,
        _ => Format::Text,
    };
    match render(action, format) {
        Ok(text) => {
            // `spoki-sync actions | head` closes the pipe early: not an error worth a panic.
            use std::io::Write as _;
            let end = if text.ends_with('\n') { "" } else { "\n" };
            let _ = write!(std::io::stdout(), "{text}{end}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spoki-sync: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// `run`: the daemon, until SIGTERM or SIGINT.
async fn run(config: Option<PathBuf>, allow_new_database: bool) -> ExitCode {
    let mut settings = match load(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    settings.storage.allow_new_database = allow_new_database;
    let log_hook = init_logging(&settings.log.filter, settings.log.format);
    if let Err(e) = settings.check_runnable() {
        eprintln!("spoki-sync: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    let (path, required) = resolve_path(config.as_deref());
    let app = match spoki_sync::app::App::build(settings).await {
        Ok(mut app) => {
            app.set_config_source(path, required);
            app.set_log_filter_hook(log_hook);
            app
        }
        Err(e) => {
            if let Some(StoreError::Refused(why)) = e.downcast_ref::<StoreError>() {
                tracing::error!(error = %why, "refusing to start");
                return ExitCode::from(EX_CONFIG);
            }
            tracing::error!(error = format!("{e:#}"), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match app
        .run_until(spoki_sync::runtime::signals::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: every problem named, exit 78; `--online` asks Spoki about the key.
async fn check_config(config: Option<PathBuf>, online: bool) -> ExitCode {
    let settings = match load(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut problems = settings.check_paths();
    if let Err(e) = settings.check_runnable() {
        problems.extend(e.problems);
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("spoki-sync: {p}");
        }
        return ExitCode::from(EX_CONFIG);
    }
    if online {
        match spoki_sync::cli::plan::check_online(&settings).await {
            Ok(()) => println!("Spoki accepted spoki.api_key"),
            Err(spoki_sync::spoki::SpokiError::Unauthorized { status, .. }) => {
                eprintln!("spoki-sync: spoki.api_key: Spoki refused it (HTTP {status})");
                return ExitCode::from(EX_CONFIG);
            }
            Err(e) => {
                eprintln!("spoki-sync: cannot check spoki.api_key: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        }
    }
    let (path, _) = resolve_path(config.as_deref());
    println!("configuration is valid ({})", source(&path));
    ExitCode::SUCCESS
}

/// `plan`: what the inbox would send for a file.
async fn plan(file: PathBuf, config: Option<PathBuf>, list: Option<i64>, json: bool) -> ExitCode {
    let settings = match load(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match spoki_sync::cli::plan::plan(&settings, &file, list).await {
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

/// `cmd`: one action queued through the running daemon.
async fn cmd(
    action: String,
    params: String,
    wait: bool,
    json: bool,
    config: Option<PathBuf>,
) -> ExitCode {
    if spoki_sync::spoki::actions::Action::from_name(&action).is_none() {
        eprintln!("spoki-sync: {}", spoki_sync::cli::actions::unknown(&action));
        return ExitCode::from(EX_USAGE);
    }
    let settings = match load(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let params = match read_params(&params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("spoki-sync: --params: {e:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let run = async {
        let client = AdminClient::from_settings(&settings)?;
        client.cmd(&action, params, wait, json).await
    };
    match run.await {
        Ok(CliOutcome::Ok) => ExitCode::SUCCESS,
        Ok(CliOutcome::Failed) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("spoki-sync: {e:#}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// `status`: the running daemon's status, once or like `top`.
async fn status(json: bool, watch: bool, config: Option<PathBuf>) -> ExitCode {
    let settings = match load(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let run = async {
        let client = AdminClient::from_settings(&settings)?;
        if watch {
            client.watch(std::time::Duration::from_secs(2)).await
        } else {
            client.status(json).await
        }
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spoki-sync: {e:#}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

async fn rejects(
    query: spoki_sync::cli::client::RejectsQuery,
    json: bool,
    config: Option<PathBuf>,
) -> ExitCode {
    let settings = match load(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let run = async {
        AdminClient::from_settings(&settings)?
            .rejects(&query, json)
            .await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spoki-sync: {e:#}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}
