//! The benchmark users for Goose, the same behaviour as Swarmer's:
//! `hello` is `GET /` in a loop with no wait (examples/rust/hello_plan.rs,
//! examples/lua/hello/plan.lua); `idle` makes one request, then waits an
//! hour (builtin:idle, examples/lua/idle/plan.lua). bench/run.sh picks one
//! with `--scenarios` and runs it against the same target as wrk and Swarmer.

use std::time::Duration;

use goose::prelude::*;

async fn get_root(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    let hour = Duration::from_secs(3600);
    GooseAttack::initialize()?
        .register_scenario(scenario!("hello").register_transaction(transaction!(get_root)))
        .register_scenario(scenario!("idle").set_wait_time(hour, hour)?.register_transaction(transaction!(get_root)))
        .execute()
        .await?;
    Ok(())
}
