# The benchmark users for Locust, on its faster HTTP client, the same
# behaviour as Swarmer's: HelloUser is GET / in a loop with no wait
# (examples/lua/hello/plan.lua); IdleUser makes one request, then waits an
# hour (examples/lua/idle/plan.lua). bench/run.sh picks one by class name
# and runs it against the same target as wrk and Swarmer.
from locust import FastHttpUser, constant, task


class HelloUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def get_root(self):
        self.client.get("/")


class IdleUser(FastHttpUser):
    wait_time = constant(3600)

    @task
    def get_root(self):
        self.client.get("/")
