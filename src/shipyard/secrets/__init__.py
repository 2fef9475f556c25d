"""Secrets: providers (env, local encrypted file, AWS Secrets Manager, SSM), the resolver that layers a
service's values per environment, value generators, GitHub Actions sync, and the Redactor applied to
everything shipyard writes or prints. See docs/secrets.md.

Import from the submodules (`shipyard.secrets.redact`, `.resolver`, `.context`): this package stays empty
so the agent's per-instance log process can load the redactor without the database layer.
"""
