"""The engine: runs plans step by step, holds the (service, env) lease, recovers runs whose owner died."""
