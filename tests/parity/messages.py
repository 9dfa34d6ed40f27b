# The seed's first custom-message example: the master (or a local runner)
# sends three test users; each worker prints them and thanks the master.
# Compared with examples/lua/messages/plan.lua by tests/parity/compare.py.
from locust import HttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner


def on_test_users(environment, msg, **_kwargs):
    for user in msg.data:
        print(f"User {user['name']} received")
    environment.runner.send_message("acknowledge_users", f"Thanks for the {len(msg.data)} users!")


def on_acknowledge(msg, **_kwargs):
    print(msg.data)


@events.init.add_listener
def on_init(environment, **_kwargs):
    if not isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("test_users", on_test_users)
    if not isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message("acknowledge_users", on_acknowledge)


@events.test_start.add_listener
def on_test_start(environment, **_kwargs):
    if not isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message("test_users", [{"name": f"User{i}"} for i in (1, 2, 3)])


class Idle(HttpUser):
    wait_time = constant(1)

    @task
    def home(self):
        self.client.get("/")
