"""The local stack behind ``meshauth up``: embedded Valkey, the services as child processes, a walkthrough."""
