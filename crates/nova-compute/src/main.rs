//! `nova-compute`: the snapshot path of OpenStack's compute service.
//!
//! Owns: the process (CLI, logging, start-up order, signals) and the RPC
//! handlers `snapshot_instance`, `backup_instance`, `quiesce_instance` and
//! `unquiesce_instance` with nova's task-state machine and error semantics.
//! It is the only crate that knows the whole flow: AMQP delivery → conductor →
//! snapshot engine → Glance → conductor.
//!
//! Must not know: wire encodings, libvirt C calls or HTTP details; those live
//! in the crates below it.

// In the order a request meets them: the process, the RPC endpoint, the
// handlers, nova's error handling, the handles they share.
mod cli;
mod logging;
mod service;
mod transport_options;

mod rpc;

mod backup;
mod quiesce;
mod recovery;
mod snapshot;
mod unsupported;

mod decorators;
mod exceptions;

mod concurrency;
mod conductor;
mod context;
mod driver;
mod image_api;
mod manager;
mod notifier;
mod volume_api;

#[cfg(test)]
mod fakes;

use std::error::Error;
use std::process::ExitCode;

use cli::Command;
use error_chain::Chain;
use oslo_config::Config;

/// Exit status for bad usage or configuration (as argparse/oslo use).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!(
                "nova-compute {} (Rust; compute RPC API {}, nova service version {})",
                env!("CARGO_PKG_VERSION"),
                manager::COMPUTE_RPC_API_VERSION,
                nova_objects::SERVICE_VERSION
            );
            ExitCode::SUCCESS
        }
        Command::DumpConfig(args) => match Config::load(&args) {
            Ok(cfg) => {
                println!("{}", cfg.dump_json());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Run(args) => match Config::load(&args) {
            Ok(cfg) => run(cfg),
            Err(e) => fail(&e),
        },
    }
}

/// The service itself: logging first, so every later failure is in the log.
fn run(cfg: Config) -> ExitCode {
    let d = &cfg.default;
    let target = logging::LogTarget::from_options(d.log_dir.as_deref(), d.log_file.as_deref(), d.use_stderr, d.debug);
    if let Err(e) = logging::init(&target) {
        return fail(&e);
    }
    // Once at start-up: options this service accepts but does not act on,
    // and deprecated spellings (each with its file and line).
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(service::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("nova-compute failed to start: {}", Chain(&e));
            eprintln!("nova-compute: {}", Chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Prints an error with its whole `source()` chain, once, and picks the exit code.
fn fail(error: &dyn Error) -> ExitCode {
    eprintln!("nova-compute: {}", Chain(error));
    ExitCode::from(EXIT_CONFIG)
}
