//! Users that make one request and then wait an hour: what the benchmark
//! measures memory per idle user with. Built into the binary as `builtin:idle`.

use swarmer_engine::{Plan, Task, TaskResult, User, UserClass, constant, task};

async fn get_root(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    Ok(())
}

/// One request, then a one-hour wait.
pub fn plan() -> Plan {
    Plan::new("idle", || {
        vec![UserClass::new("IdleUser").wait_time(constant(3600.0)).task(Task::new("get_root", task!(get_root)))]
    })
}
