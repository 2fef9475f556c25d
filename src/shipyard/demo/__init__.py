"""The `shipyard demo` scenario's parts: example apps, a throwaway workspace, and a load generator.

apps/        source of the example services, copied into the demo's git repos (not imported here)
workspace.py create_workspace() / commit_version(): real repos with bare origins and a shipyard.yaml
load.py      run_load() / LoadRunner: open-loop HTTP load that shows when a deploy drops requests

Nothing is imported eagerly, so `import shipyard.demo` stays cheap for the CLI.
"""
