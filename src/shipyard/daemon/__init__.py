"""`shipyard serve`'s background work, split between daemons through leases in the store.

Each piece of work (`Work`: a name and a coroutine that runs until told to stop) is run by at most one
daemon at a time: the one holding its lease (store/daemon_leases.py). `Daemon.run` claims or renews every
lease each third of the TTL, starts the work it newly holds, stops the work whose lease it lost, and on a
clean stop releases its leases so another daemon takes over at once. A SIGKILLed daemon's work is taken
over when its lease expires (or at once, on the same host, once its process is seen dead).

Today's work: the notification outbox worker and the GitOps watcher (gitops.py, gitops_watch.py). The
alarm monitor and the retention pruner join as they land (issue 10).
"""

from shipyard.daemon.runner import Daemon, Work

__all__ = ["Daemon", "Work"]
