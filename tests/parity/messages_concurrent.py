# The seed's second custom-message example: the master splits one name per
# user over its workers; each user takes a name no other user has; a
# handler that waits (concurrent=True) does not hold up the others.
# Compared with examples/lua/messages_concurrent/plan.lua by
# tests/parity/compare.py.
import gevent
from locust import HttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

usernames = []


def on_test_users(environment, msg, **_kwargs):
    usernames.extend(u["name"] for u in msg.data)
    environment.runner.send_message("acknowledge_users", f"Thanks for the {len(msg.data)} users!")
    environment.runner.send_message("concurrent_message", "Message to concurrent handler")


def on_acknowledge(msg, **_kwargs):
    print(msg.data)


def on_concurrent_message(msg, **_kwargs):
    print(f"concurrent_message received with data: '{msg.data}'")
    gevent.sleep(1)
    print("finished processing concurrent_message")


@events.init.add_listener
def on_init(environment, **_kwargs):
    if not isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("test_users", on_test_users)
    if not isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message("acknowledge_users", on_acknowledge)
        environment.runner.register_message("concurrent_message", on_concurrent_message, concurrent=True)


@events.test_start.add_listener
def on_test_start(environment, **_kwargs):
    if isinstance(environment.runner, WorkerRunner):
        return
    users = [{"name": f"User{i}"} for i in range(environment.runner.target_user_count)]
    workers = list(environment.runner.clients) if isinstance(environment.runner, MasterRunner) else [None]
    size = len(users) // len(workers)
    for i, worker in enumerate(workers):
        end = len(users) if i + 1 == len(workers) else (i + 1) * size
        environment.runner.send_message("test_users", users[i * size : end], worker)


class Named(HttpUser):
    wait_time = constant(0.5)

    def __init__(self, parent):
        self.username = usernames.pop()
        super().__init__(parent)

    @task
    def show(self):
        self.client.get("/")
        print(f"name {self.username}")
