"""ECR: which images a repository keeps (retention, pure; prune, its executor; inuse, what ECS runs) and
the tags a build's image ends with (tags). Every boto3 call goes through shipyard.aws."""
