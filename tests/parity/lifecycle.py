# Locust's test-data lifecycle (the seed's "test data management" example),
# against the local demo target instead of a public echo service. Every
# step prints one numbered line; tests/parity/compare.py checks that the
# Swarmer plan examples/lua/lifecycle/plan.lua prints the same lines, as
# often, in the same processes.
from __future__ import annotations

from locust import HttpUser, events, task
from locust.runners import MasterRunner
from locust.user.wait_time import constant

print("1. plan parsed")

run_data = None


@events.init.add_listener
def on_init(environment, **_kwargs):
    print("2. init")


@events.test_start.add_listener
def on_test_start(environment, **_kwargs):
    global run_data
    print("3. test start")
    if not isinstance(environment.runner, MasterRunner):
        run_data = "run-data"


@events.heartbeat_sent.add_listener
def on_heartbeat_sent(client_id, timestamp):
    print("M2. heartbeat sent")


@events.heartbeat_received.add_listener
def on_heartbeat_received(client_id, timestamp):
    print("M3. heartbeat received")


@events.test_stopping.add_listener
def on_test_stopping(environment, **_kwargs):
    print("6. test stopping")


@events.test_stop.add_listener
def on_test_stop(environment, **_kwargs):
    print("8. test stopped")


@events.quitting.add_listener
def on_quitting(environment, **_kwargs):
    print("9. quitting")


@events.quit.add_listener
def on_quit(exit_code, **_kwargs):
    print(f"10. quit with code {exit_code}")


class DataUser(HttpUser):
    wait_time = constant(0.5)
    first_start = True

    def on_start(self):
        if DataUser.first_start:
            DataUser.first_start = False
            print("X. first user of this process")
        print("4. user started")
        self.own = self.client.post("/echo", data="user-data").text

    @task
    def fetch(self):
        self.client.get(f"/headers?run={run_data}&user={self.own}")
        print("5. task")

    def on_stop(self):
        print("7. user stopped")
