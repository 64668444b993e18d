"""How the `evolve` flow is deployed: prefect.yaml (repository root) for `prefect deploy --all` and a work pool;
`python -m deployments.serve` for one process serving the same deployments without one."""
