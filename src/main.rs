//! The `pushbridge` command line: `run`, `check`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pushbridge::config::{Config, LogConfig, LogFormat};

/// Exit code for a bad configuration (EX_USAGE-style, BSD sysexits `EX_DATAERR` family).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "pushbridge",
    version,
    about = "Push-protocol converting reverse-proxy sidecar"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file.
    Run {
        /// The YAML configuration file.
        #[arg(short, long, env = "PUSHBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file as `run` would (certificates and keys loaded, routes built, nothing bound):
    /// prints every problem as FILE:LINE:COL: field: message.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A self-contained demo: a ticker upstream, the proxy on HTTPS and HTTP, and a live page.
    Demo(pushbridge::demo::DemoArgs),
}

/// jemalloc (feature `jemalloc`, opt-in): glibc's malloc kept a spike's memory (10 000 SSE clients come
/// and gone: none of it back after 30 s); jemalloc's background thread purges freed pages within about a second
/// (benches/rss-return.sh, docs/config.md "Memory after a spike").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (read at its start; `_RJEM_MALLOC_CONF` in the environment overrides them): a background
/// thread returns dirty pages after 1 s, without the intermediate "muzzy" state (counted in RSS until then).
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config)
            .map_err(pushbridge::BoxError::from)
            .and_then(pushbridge::app::check)
        {
            Ok(warnings) => {
                for warning in warnings {
                    eprintln!("{}: warning: {warning}", config.display());
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config: path } => {
            let config = match Config::load(&path) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            pushbridge::logs::init(&config.log);
            runtime(|| pushbridge::app::run(path, config))
        }
        Command::Demo(args) => {
            pushbridge::logs::init(&LogConfig {
                format: LogFormat::Text,
                level: "info".into(),
            });
            runtime(|| pushbridge::demo::run(args))
        }
    }
}

fn runtime<F, Fut>(main: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), pushbridge::BoxError>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pushbridge: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushbridge: {}", pushbridge::error::chain(&*error));
            ExitCode::FAILURE
        }
    }
}
