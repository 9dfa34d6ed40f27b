//! The built-in target as subcommands: `swarmer target` serves it,
//! `swarmer demo` serves it on a free local port and load-tests it, so a
//! first run needs nothing of the user's.

use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use swarmer_engine::Plan;
use swarmer_target::{DemoTarget, KvServer, PredictServer, Stall, TargetOptions, TlsFiles};

use crate::args::{DemoArgs, RunArgs, TargetArgs};

/// The plan `swarmer demo` runs when the program has none of its own.
pub fn default_plan() -> Plan {
    crate::builtin::builtin_plan("seed").expect("the seed plan is built in")
}

/// Demo defaults for what the user did not set: 20 users at 5/s for 30 s.
pub fn with_demo_defaults(mut run: RunArgs, matches: &ArgMatches) -> RunArgs {
    let unset =
        |id: &str| !matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
    if unset("users") {
        run.users = 20;
    }
    if unset("spawn_rate") {
        run.spawn_rate = 5.0;
    }
    if unset("run_time") {
        run.run_time = Some(Duration::from_secs(30));
    }
    run.headless = true;
    run
}

/// Start the target on a free port and run `plan` against it.
pub async fn run_demo(plan: Plan, mut run: RunArgs, args: DemoArgs) -> i32 {
    let options = TargetOptions {
        delay: Duration::from_millis(args.target_delay),
        error_rate: args.target_error_rate,
        stall: args.target_stall.map(|(after, lasting)| Stall::starting_in(after, lasting)),
        ..Default::default()
    };
    let target = match DemoTarget::spawn("127.0.0.1:0", options, 1) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("swarmer: error: {e}");
            return 1;
        }
    };
    eprintln!("Demo target listening on {} (Locust's quick-start site: /, /login, /profile)", target.url());
    if run.host.is_none() {
        run.host = Some(target.url());
    }
    let code = match crate::configure(run, &|_| false) {
        Ok(config) => crate::run_with(plan, config, false).await,
        Err(code) => code,
    };
    drop(target);
    code
}

/// `swarmer target`: serve until Ctrl-C.
pub async fn serve_target(args: TargetArgs) -> i32 {
    let tls = args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles { cert, key, client_ca: None });
    // With a certificate, the gRPC API is served over TLS too.
    let grpc = match args.grpc_bind.as_deref().map(|addr| PredictServer::spawn(addr, args.threads, tls.as_ref())) {
        Some(Err(e)) => {
            eprintln!("swarmer: error: --grpc-bind: {e}");
            return 1;
        }
        Some(Ok(grpc)) => Some(grpc),
        None => None,
    };
    let kv = match args.kv_bind.as_deref().map(KvServer::spawn) {
        Some(Err(e)) => {
            eprintln!("swarmer: error: --kv-bind: {e}");
            return 1;
        }
        Some(Ok(kv)) => Some(kv),
        None => None,
    };
    let options = TargetOptions {
        delay: Duration::from_millis(args.delay),
        error_rate: args.error_rate,
        stall: args.stall.map(|(after, lasting)| Stall::starting_in(after, lasting)),
        tls,
        ..Default::default()
    };
    let target = match DemoTarget::spawn(&args.bind, options, args.threads) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("swarmer: error: {e}");
            return 1;
        }
    };
    eprintln!("Demo target listening on {} (Ctrl-C to stop)", target.url());
    if let Some(grpc) = &grpc {
        eprintln!("Prediction API over gRPC on {} (categorization.TextCategorization/GetPrediction)", grpc.url());
    }
    if let Some(kv) = &kv {
        eprintln!("Key-value store over TCP on {} (PING, SET, GET, DEL, INCR, SLEEP)", kv.addr());
    }
    eprintln!("WebSocket echo on /ws, Server-Sent Events on /sse");
    let _ = tokio::signal::ctrl_c().await;
    0
}
