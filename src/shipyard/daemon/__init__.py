"""`shipyard serve`'s background work, split between daemons through leases in the store.

Each piece of work (`Work`: a name and a coroutine that runs until told to stop) is run by at most one
daemon at a time: the one holding its lease (store/daemon_leases.py). `Daemon.run` claims or renews every
lease each third of the TTL, starts the work it newly holds, stops the work whose lease it lost, and on a
clean stop releases its leases so another daemon takes over at once. A SIGKILLed daemon's work is taken
over when its lease expires (or at once, on the same host, once its process is seen dead).

The work (built in cli/serve.py): the notification outbox worker (`outbox`), the alarm monitor
(`alarms`, cli/watch.py's `alarm_work`), the GitOps watcher (`gitops`, gitops.py, gitops_watch.py), the
folding of closed days (`aggregates`, retention.py) and the retention pruner (`retention`, retention.py; with
`retention:` in shipyard.yaml).
"""

from shipyard.daemon.runner import Daemon, Work

__all__ = ["Daemon", "Work"]
