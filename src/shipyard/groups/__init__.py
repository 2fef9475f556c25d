"""Release groups: several services released together, in waves, with one abort (docs/releases.md).

`plan` is pure: waves and revisions in, the ordered member plan and the abort plan out. The executor that
deploys members and undoes them is engine.groups; the records are store.groups.
"""
