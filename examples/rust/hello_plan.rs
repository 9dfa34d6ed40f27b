//! The benchmark user: `GET /` in a loop with no wait between requests.
//! Shared by `examples/rust/hello_loop.rs` and the binary's `builtin:hello`.

use swarmer_engine::{Plan, Task, TaskResult, User, UserClass, task};

async fn get_root(user: &mut User) -> TaskResult {
    user.client.get("/").await;
    Ok(())
}

/// One class, one task, no wait.
pub fn plan() -> Plan {
    Plan::new("hello", || vec![UserClass::new("HelloUser").task(Task::new("get_root", task!(get_root)))])
}
